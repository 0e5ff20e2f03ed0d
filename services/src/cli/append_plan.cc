#include "cli/append_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cli/chapters.h"

namespace tome::cli {

std::vector<Span> BookSpans(absl::string_view text, bool detect) {
  const std::vector<Chapter> chapters = detect ? DetectChapters(text) : std::vector<Chapter>{};
  if (chapters.empty()) return {Span{"", 0, text.size()}};
  std::vector<Span> spans;
  if (chapters.front().offset > 0) spans.push_back({"", 0, chapters.front().offset});
  for (size_t i = 0; i < chapters.size(); ++i) {
    const size_t end = i + 1 < chapters.size() ? chapters[i + 1].offset : text.size();
    spans.push_back({chapters[i].name, chapters[i].offset, end});
  }
  return spans;
}

bool ForEachPiece(absl::string_view section, absl::string_view text, size_t piece_bytes,
                  const std::function<bool(absl::string_view, absl::string_view)>& emit) {
  size_t offset = 0;
  do {
    const size_t n = std::min(piece_bytes, text.size() - offset);
    if (!emit(offset == 0 ? section : absl::string_view(), text.substr(offset, n))) return false;
    offset += n;
  } while (offset < text.size());
  return true;
}

std::string ChapterSectionText(absl::string_view name, absl::string_view text) {
  if (name.empty()) return std::string(text);
  return absl::StrCat("=== Chapter: ", name, " ===\n", text);
}

}  // namespace tome::cli
