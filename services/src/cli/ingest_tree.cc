#include "cli/ingest_tree.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "cli/gitignore.h"
#include "cli/text_files.h"

namespace tome::cli {
namespace fs = std::filesystem;
namespace {

class Walker {
 public:
  Walker(const TreeOptions& options, TreeListing* out) : options_(options), out_(out) {}

  void Walk(const fs::path& dir, const std::string& rel_dir) {
    if (options_.use_gitignore) {
      std::string content, error;
      std::error_code ec;
      const fs::path ignore_file = dir / ".gitignore";
      if (fs::is_regular_file(fs::symlink_status(ignore_file, ec)) &&
          ReadFile(ignore_file.string(), &content, &error)) {
        matcher_.AddRules(rel_dir, content);
      }
    }
    if (rel_dir.empty() && !options_.excludes.empty()) {
      matcher_.AddRules("", absl::StrJoin(options_.excludes, "\n"));
    }
    std::error_code ec;
    std::vector<fs::directory_entry> entries;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      entries.push_back(*it);
    }
    if (ec) {
      Skip(rel_dir + "/", absl::StrCat("unreadable directory: ", ec.message()));
      return;
    }
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      return a.path().filename().string() < b.path().filename().string();
    });
    for (const fs::directory_entry& entry : entries) {
      const std::string name = entry.path().filename().string();
      const std::string rel = rel_dir.empty() ? name : rel_dir + "/" + name;
      const fs::file_status status = entry.symlink_status(ec);
      if (ec) {
        Skip(rel, absl::StrCat("cannot stat: ", ec.message()));
      } else if (fs::is_symlink(status)) {
        Skip(rel, "symbolic link");
      } else if (fs::is_directory(status)) {
        if (name == ".git") {
          Skip(rel + "/", "git metadata");
        } else if (matcher_.Ignored(rel, /*is_dir=*/true)) {
          Skip(rel + "/", "ignored");
        } else {
          Walk(entry.path(), rel);
        }
      } else if (!fs::is_regular_file(status)) {
        Skip(rel, "not a regular file");
      } else if (matcher_.Ignored(rel, /*is_dir=*/false)) {
        Skip(rel, "ignored");
      } else {
        AddFile(entry, rel);
      }
    }
  }

 private:
  void AddFile(const fs::directory_entry& entry, const std::string& rel) {
    std::error_code ec;
    const auto size = static_cast<int64_t>(entry.file_size(ec));
    if (ec) return Skip(rel, absl::StrCat("cannot stat: ", ec.message()));
    if (size > options_.max_file_bytes) {
      return Skip(rel, absl::StrCat("too large (", size, " bytes > ", options_.max_file_bytes,
                                    ", see --max_file_kb)"));
    }
    std::string content, error;
    if (!ReadFile(entry.path().string(), &content, &error)) return Skip(rel, error);
    const std::string binary = BinaryReason(content);
    if (!binary.empty()) return Skip(rel, binary);
    out_->files.push_back({rel, static_cast<int64_t>(content.size())});
    out_->total_bytes += static_cast<int64_t>(content.size());
  }

  void Skip(const std::string& path, std::string reason) {
    out_->skipped.push_back({path, std::move(reason)});
  }

  const TreeOptions& options_;
  TreeListing* out_;
  GitignoreMatcher matcher_;
};

}  // namespace

absl::StatusOr<TreeListing> ListTree(const std::string& root, const TreeOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(root, " is not a directory"));
  }
  TreeListing listing;
  Walker(options, &listing).Walk(fs::path(root), "");
  // Full relative paths in byte order: independent of the file system's listing order.
  std::sort(listing.files.begin(), listing.files.end(),
            [](const TreeFile& a, const TreeFile& b) { return a.path < b.path; });
  std::sort(listing.skipped.begin(), listing.skipped.end(),
            [](const SkippedPath& a, const SkippedPath& b) { return a.path < b.path; });
  return listing;
}

std::string FileSectionText(absl::string_view path, absl::string_view content) {
  std::string text = absl::StrCat("=== File: ", path, " ===\n", content);
  if (!content.empty() && content.back() != '\n') text.push_back('\n');
  return text;
}

}  // namespace tome::cli
