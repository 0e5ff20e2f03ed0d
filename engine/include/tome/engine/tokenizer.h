// Tokenizers: SentencePiece (the released checkpoint and Tome's embedded model) and a
// byte-level one for small test models.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tome::engine {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text` (no BOS added). InvalidArgument if `text` is not valid UTF-8.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const = 0;
  // The text of the ids. Bytes that do not form complete UTF-8 characters are kept as they
  // are; use StreamDecoder for token-by-token output.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;
  // Raw bytes one token stands for (special tokens give their literal text).
  virtual std::string TokenBytes(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  // Id of a special token given by its text (e.g. "<|im_start|>"), or -1.
  virtual int32_t SpecialTokenId(absl::string_view text) const = 0;
  virtual std::string name() const = 0;
};

// Turns a stream of token ids into text pieces that are always whole UTF-8 characters.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  // Returns the text completed by `id` (may be empty while a character is incomplete).
  std::string Next(int32_t id);
  // Returns whatever is pending (invalid bytes replaced by U+FFFD).
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

// Byte-level tokenizer: 0 = <unk>, 1 = <s>, 2 = </s>, byte b = b + 3; vocab >= 259.
std::unique_ptr<Tokenizer> NewByteTokenizer(int32_t vocab_size);

// Loads `model_dir`/tokenizer.model (SentencePiece) if present, else the byte tokenizer.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir,
                                                         int32_t vocab_size);

// True when `text` is valid UTF-8.
bool IsValidUtf8(absl::string_view text);

}  // namespace tome::engine
