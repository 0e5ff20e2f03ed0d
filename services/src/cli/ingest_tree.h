// Walking a source tree for `tome ingest DIR`: which files become sections, in what order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tome::cli {

struct TreeOptions {
  // Larger files are skipped (generated code, data, logs rarely help answers).
  int64_t max_file_bytes = 1 << 20;
  // Read .gitignore files (the root's and nested ones).
  bool use_gitignore = true;
  // Extra gitignore-syntax patterns, applied as if in a .gitignore at the root, after it.
  std::vector<std::string> excludes;
};

struct TreeFile {
  std::string path;  // relative to the root, `/`-separated
  int64_t bytes = 0;
};

struct SkippedPath {
  std::string path;  // relative; directories end with `/`
  std::string reason;
};

struct TreeListing {
  std::vector<TreeFile> files;  // sorted by path, bytewise
  std::vector<SkippedPath> skipped;  // sorted by path
  int64_t total_bytes = 0;
};

// Lists the text files below `root` to ingest. Never descends into `.git` or ignored
// directories and never follows symbolic links. Reads every candidate file once to reject
// binary and non-UTF-8 files. INVALID_ARGUMENT if `root` is not a readable directory.
absl::StatusOr<TreeListing> ListTree(const std::string& root, const TreeOptions& options);

// The text of a file's section: a header line naming it, then its content, ending in a
// newline so that the next header starts a line of its own.
std::string FileSectionText(absl::string_view path, absl::string_view content);

}  // namespace tome::cli
