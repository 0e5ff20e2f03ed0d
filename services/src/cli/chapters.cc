#include "cli/chapters.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tome::cli {
namespace {

// Headings further apart than this are real chapters; closer ones look like a table of
// contents or a part title directly above a chapter title.
constexpr size_t kMinChapterBytes = 200;
constexpr size_t kMaxHeadingBytes = 100;

bool IsNumberToken(absl::string_view word) {
  if (word.empty() || word.size() > 12) return false;
  bool digits = true, upper_roman = true, lower_roman = true;
  for (char c : word) {
    digits &= std::isdigit(static_cast<unsigned char>(c)) != 0;
    upper_roman &= absl::string_view("IVXLCDM").find(c) != absl::string_view::npos;
    lower_roman &= absl::string_view("ivxlcdm").find(c) != absl::string_view::npos;
  }
  if (digits) return word.size() <= 4;
  if (upper_roman || lower_roman) return true;
  static constexpr absl::string_view kWords[] = {
      "one",     "two",     "three",    "four",     "five",    "six",       "seven",
      "eight",   "nine",    "ten",      "eleven",   "twelve",  "thirteen",  "fourteen",
      "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",  "first",
      "second",  "third",   "fourth",   "fifth",    "last"};
  for (absl::string_view w : kWords) {
    if (absl::EqualsIgnoreCase(word, w)) return true;
  }
  return false;
}

bool IsWordHeading(absl::string_view line) {
  static constexpr absl::string_view kKeywords[] = {"Chapter", "CHAPTER", "Book",
                                                   "BOOK",    "Part",    "PART"};
  for (absl::string_view keyword : kKeywords) {
    if (!absl::StartsWith(line, keyword)) continue;
    absl::string_view rest = line.substr(keyword.size());
    if (rest.empty() || (rest[0] != ' ' && rest[0] != '\t')) return false;
    rest = absl::StripLeadingAsciiWhitespace(rest);
    size_t end = 0;
    while (end < rest.size() && std::isalnum(static_cast<unsigned char>(rest[end]))) ++end;
    if (!IsNumberToken(rest.substr(0, end))) return false;
    rest.remove_prefix(end);
    if (rest.empty()) return true;
    if (absl::string_view(".:)-").find(rest[0]) != absl::string_view::npos) return true;
    if (absl::StartsWith(rest, "\u2013") || absl::StartsWith(rest, "\u2014")) return true;
    if (rest[0] != ' ' && rest[0] != '\t') return false;
    // "Chapter 3 The Storm" is a heading, "Chapter 3 describes ..." is prose.
    rest = absl::StripLeadingAsciiWhitespace(rest);
    return !rest.empty() && !std::islower(static_cast<unsigned char>(rest[0]));
  }
  return false;
}

bool IsFence(absl::string_view line) {
  line = absl::StripLeadingAsciiWhitespace(line);
  return absl::StartsWith(line, "```") || absl::StartsWith(line, "~~~");
}

template <typename Headings>
bool NameRepeats(const Headings& headings, size_t k) {
  for (size_t j = k + 1; j < headings.size(); ++j) {
    if (absl::EqualsIgnoreCase(headings[j].chapter.name, headings[k].chapter.name)) return true;
  }
  return false;
}

}  // namespace

bool IsChapterHeading(absl::string_view line, std::string* name, bool* markdown) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxHeadingBytes + 8) return false;
  // Markdown ATX headings of level 1 or 2, at the very start of the line.
  size_t hashes = 0;
  while (hashes < line.size() && line[hashes] == '#') ++hashes;
  if (hashes == 1 || hashes == 2) {
    if (hashes == line.size() || (line[hashes] != ' ' && line[hashes] != '\t')) return false;
    absl::string_view title = absl::StripAsciiWhitespace(line.substr(hashes));
    while (!title.empty() && title.back() == '#') title.remove_suffix(1);  // closing #s
    title = absl::StripTrailingAsciiWhitespace(title);
    if (title.empty()) return false;
    *name = std::string(title);
    *markdown = true;
    return true;
  }
  const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
  if (trimmed.size() > kMaxHeadingBytes || !IsWordHeading(trimmed)) return false;
  *name = std::string(trimmed);
  *markdown = false;
  return true;
}

std::vector<Chapter> DetectChapters(absl::string_view text) {
  struct Heading {
    Chapter chapter;
    bool markdown;
  };
  std::vector<Heading> headings;
  bool in_fence = false;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == absl::string_view::npos) end = text.size();
    const absl::string_view line = text.substr(start, end - start);
    if (IsFence(line)) {
      in_fence = !in_fence;
    } else if (!in_fence) {
      Heading h;
      if (IsChapterHeading(line, &h.chapter.name, &h.markdown)) {
        h.chapter.offset = start;
        headings.push_back(std::move(h));
      }
    }
    start = end + 1;
  }
  // Drop tables of contents: runs of word headings each closer than kMinChapterBytes to the
  // next. A run of one is a part title above a chapter: merge it into that chapter.
  std::vector<Chapter> chapters;
  for (size_t i = 0; i < headings.size();) {
    auto is_short = [&](size_t k) {
      return !headings[k].markdown && k + 1 < headings.size() &&
             headings[k + 1].chapter.offset - headings[k].chapter.offset < kMinChapterBytes;
    };
    size_t run = i;
    while (run < headings.size() && is_short(run)) ++run;
    if (run == i) {
      chapters.push_back(headings[i].chapter);
      ++i;
      continue;
    }
    // headings[i..run) are short; headings[run] (exists, since the last is never short)
    // follows them.
    if (run - i == 1) {
      Chapter merged = headings[run].chapter;
      merged.name = absl::StrCat(headings[i].chapter.name, " / ", merged.name);
      merged.offset = headings[i].chapter.offset;
      chapters.push_back(std::move(merged));
    } else if (!NameRepeats(headings, run)) {
      // The entry after a table of contents is a real chapter unless it is the contents'
      // last line, whose chapter comes again later (after a preface, say).
      chapters.push_back(headings[run].chapter);
    }
    i = run + 1;
  }
  if (chapters.size() < 2) chapters.clear();
  return chapters;
}

}  // namespace tome::cli
