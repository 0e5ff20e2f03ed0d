// Reading files and telling text from binary for `tome ingest`.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace tome::cli {

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points above
// U+10FFFF), which the server requires of all appended text.
bool IsValidUtf8(absl::string_view text);

// Why `content` is not ingestible text: "binary (NUL byte)" if a NUL occurs in its first
// 8 KiB, "not UTF-8" if it is not valid UTF-8; empty if it is text.
std::string BinaryReason(absl::string_view content);

// Reads a whole file (or stdin for "-"). On failure returns false with `*error` set.
bool ReadFile(const std::string& path, std::string* content, std::string* error);

}  // namespace tome::cli
