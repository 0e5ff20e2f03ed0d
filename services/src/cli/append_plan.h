// How `tome append`/`ingest` cut text into AppendTextRequest pieces.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tome::cli {

// AppendText message payload: well under the server's 4 MiB message limit.
inline constexpr size_t kPieceBytes = 1 << 20;

// A part of a text that starts a section named `name` (empty: no new section).
struct Span {
  std::string name;
  size_t begin = 0;
  size_t end = 0;
};

// A book's spans: one per detected chapter (plus an unnamed one for any text before the
// first), or a single unnamed span if no chapters are detected or `detect` is false.
std::vector<Span> BookSpans(absl::string_view text, bool detect);

// The text sent for a chapter: a header line `=== Chapter: <name> ===` (the form Tome's
// model was trained to read section names from, as `=== File: <path> ===` for source
// files), then the chapter's own text. Unnamed spans go as they are.
std::string ChapterSectionText(absl::string_view name, absl::string_view text);

// Calls `emit(section, piece)` for consecutive pieces of `text` of at most `piece_bytes`
// bytes; only the first carries `section` (a section runs until the next named piece).
// Pieces may split a UTF-8 character: the server validates the concatenation. Stops early
// and returns false when `emit` does. Empty text is one empty piece.
bool ForEachPiece(absl::string_view section, absl::string_view text, size_t piece_bytes,
                  const std::function<bool(absl::string_view, absl::string_view)>& emit);

}  // namespace tome::cli
