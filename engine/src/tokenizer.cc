#include "tome/engine/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace tome::engine {

bool IsValidUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    int len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return false;
    }
    i += len;
  }
  return true;
}

namespace {

// Length of the longest prefix of `s` made of complete UTF-8 sequences, treating invalid
// lead bytes as complete (they are replaced on flush).
size_t CompletePrefix(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                 : (c & 0xf8) == 0xf0 ? 4 : 1;
    if (i + len > s.size()) break;
    i += len;
  }
  return i;
}

// Replaces invalid UTF-8 sequences by U+FFFD.
std::string Sanitize(absl::string_view s) {
  if (IsValidUtf8(s)) return std::string(s);
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 1;
    const unsigned char c = s[i];
    if (c >= 0xc0) len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    if (i + len <= s.size() && IsValidUtf8(s.substr(i, len))) {
      out.append(s.data() + i, len);
      i += len;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else {
      out.append("\xef\xbf\xbd");
      ++i;
    }
  }
  return out;
}

}  // namespace

std::string StreamDecoder::Next(int32_t id) {
  pending_ += tokenizer_->TokenBytes(id);
  const size_t n = CompletePrefix(pending_);
  std::string ready = Sanitize(absl::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return ready;
}

std::string StreamDecoder::Flush() {
  std::string rest = Sanitize(pending_);
  pending_.clear();
  return rest;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> NewSentencePieceTokenizer(const std::string& path,
                                                                     int32_t vocab_size);

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir,
                                                         int32_t vocab_size) {
  const auto sp = std::filesystem::path(model_dir) / "tokenizer.model";
  if (std::filesystem::exists(sp)) return NewSentencePieceTokenizer(sp.string(), vocab_size);
  if (vocab_size < 259) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, " has no tokenizer.model, and vocab_size ", vocab_size,
        " is too small for the byte-level tokenizer (needs >= 259)"));
  }
  return NewByteTokenizer(vocab_size);
}

}  // namespace tome::engine
