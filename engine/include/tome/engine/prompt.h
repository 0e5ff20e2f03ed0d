// How a document and a question about it become tokens. The document is prefilled once and
// stored, so its tokens must not depend on the question: the prompt is split into a
// document part and a question part that is appended after it.
//
// Two formats: ChatML (models whose tokenizer has <|im_start|>, such as MiniCPM-SALA):
//   <s><|im_start|>user\n{document}\n\n{question}<|im_end|>\n<|im_start|>assistant\n
// and plain (byte-level and Tome's own small model):
//   <s>{document}\nQuestion: {question}\nAnswer:
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tome/engine/tokenizer.h"

namespace tome::engine {

class PromptFormat {
 public:
  // Picks ChatML when the tokenizer knows <|im_start|> and <|im_end|>, else plain.
  explicit PromptFormat(const Tokenizer* tokenizer);

  bool chatml() const { return im_start_ >= 0; }
  // Tokens that open a document (BOS, and the ChatML user header). Prefilled before its text.
  std::vector<int32_t> DocumentHeader() const;
  // Tokens of a piece of document text (InvalidArgument for invalid UTF-8).
  absl::StatusOr<std::vector<int32_t>> DocumentText(absl::string_view text) const;
  // Tokens that follow the document: the question and the answer cue.
  absl::StatusOr<std::vector<int32_t>> Question(absl::string_view question) const;
  // Tokens of a later question in the same conversation (after AnswerEnd): plain repeats
  // the Question form; ChatML opens a new user turn.
  absl::StatusOr<std::vector<int32_t>> FollowUp(absl::string_view question) const;
  // Tokens that close an answer in a conversation's context (plain: EOS; ChatML:
  // <|im_end|> and a newline), as the model saw answers end in training.
  std::vector<int32_t> AnswerEnd() const;
  // Tokens that end an answer besides the model's EOS (ChatML: <|im_end|>).
  std::vector<int32_t> StopTokens() const;

 private:
  const Tokenizer* tokenizer_;
  int32_t im_start_ = -1;
  int32_t im_end_ = -1;
};

}  // namespace tome::engine
