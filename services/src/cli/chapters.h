// Chapter detection for `tome ingest FILE` (books): where obvious, a book is appended as one
// section per chapter, so that answers cite chapters by name.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tome::cli {

struct Chapter {
  std::string name;   // the heading line, trimmed (Markdown: without the `#`s)
  size_t offset = 0;  // byte offset of the heading line's start
};

// Whether `line` (one line, no newline) is a chapter heading: "Chapter 12", "CHAPTER XII",
// "Chapter 3: Title", "BOOK II", "Part One" (Chapter/Book/Part, capitalized or upper case,
// then an Arabic or Roman number or a number word, then nothing, punctuation or a title
// that does not start in lower case), or a Markdown "# Heading" / "## Heading". Sets
// `*name`.
bool IsChapterHeading(absl::string_view line, std::string* name, bool* markdown);

// The chapters of `text`, in order; empty unless at least two are found. Headings inside
// Markdown code fences are not headings. Runs of headings a few lines apart (a table of
// contents) are dropped; a single one directly before another heading ("BOOK II" then
// "CHAPTER I") is merged into it ("BOOK II / CHAPTER I").
std::vector<Chapter> DetectChapters(absl::string_view text);

}  // namespace tome::cli
