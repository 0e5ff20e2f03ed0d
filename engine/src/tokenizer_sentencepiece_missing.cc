// Used when the build has no SentencePiece (TOME_SERVICES=OFF machines without it).
#include "absl/strings/str_cat.h"
#include "tome/engine/tokenizer.h"

namespace tome::engine {

absl::StatusOr<std::unique_ptr<Tokenizer>> NewSentencePieceTokenizer(const std::string& path,
                                                                     int32_t vocab_size) {
  return absl::UnimplementedError(
      absl::StrCat("this build has no SentencePiece support; cannot load ", path));
}

}  // namespace tome::engine
