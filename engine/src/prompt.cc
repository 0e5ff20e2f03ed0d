#include "tome/engine/prompt.h"

#include "absl/strings/str_cat.h"
#include "tome/base/status_macros.h"

namespace tome::engine {

PromptFormat::PromptFormat(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {
  const int32_t start = tokenizer->SpecialTokenId("<|im_start|>");
  const int32_t end = tokenizer->SpecialTokenId("<|im_end|>");
  if (start >= 0 && end >= 0) {
    im_start_ = start;
    im_end_ = end;
  }
}

std::vector<int32_t> PromptFormat::DocumentHeader() const {
  std::vector<int32_t> ids = {tokenizer_->bos_id()};
  if (chatml()) {
    ids.push_back(im_start_);
    const auto user = tokenizer_->Encode("user\n");
    if (user.ok()) ids.insert(ids.end(), user->begin(), user->end());
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> PromptFormat::DocumentText(absl::string_view text) const {
  return tokenizer_->Encode(text);
}

absl::StatusOr<std::vector<int32_t>> PromptFormat::Question(absl::string_view question) const {
  if (!chatml()) return tokenizer_->Encode(absl::StrCat("\nQuestion: ", question, "\nAnswer:"));
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_->Encode(absl::StrCat("\n\n", question)));
  ids.push_back(im_end_);
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> nl, tokenizer_->Encode("\n"));
  ids.insert(ids.end(), nl.begin(), nl.end());
  ids.push_back(im_start_);
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> assistant, tokenizer_->Encode("assistant\n"));
  ids.insert(ids.end(), assistant.begin(), assistant.end());
  return ids;
}

absl::StatusOr<std::vector<int32_t>> PromptFormat::FollowUp(absl::string_view question) const {
  if (!chatml()) return Question(question);
  std::vector<int32_t> ids = {im_start_};
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> user,
                        tokenizer_->Encode(absl::StrCat("user\n", question)));
  ids.insert(ids.end(), user.begin(), user.end());
  ids.push_back(im_end_);
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> nl, tokenizer_->Encode("\n"));
  ids.insert(ids.end(), nl.begin(), nl.end());
  ids.push_back(im_start_);
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> assistant, tokenizer_->Encode("assistant\n"));
  ids.insert(ids.end(), assistant.begin(), assistant.end());
  return ids;
}

std::vector<int32_t> PromptFormat::AnswerEnd() const {
  if (!chatml()) return {tokenizer_->eos_id()};
  std::vector<int32_t> ids = {im_end_};
  if (auto nl = tokenizer_->Encode("\n"); nl.ok()) ids.insert(ids.end(), nl->begin(), nl->end());
  return ids;
}

std::vector<int32_t> PromptFormat::StopTokens() const {
  if (chatml()) return {im_end_};
  return {};
}

}  // namespace tome::engine
