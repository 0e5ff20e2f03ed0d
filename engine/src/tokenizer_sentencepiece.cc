// SentencePiece tokenizer (tokenizer.model of the released checkpoint and of Tome's model).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "sentencepiece_model.h"
#include "tome/engine/tokenizer.h"

namespace tome::engine {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::unique_ptr<SentencePieceModel> sp, int32_t vocab_size)
      : sp_(std::move(sp)), vocab_size_(vocab_size) {}

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override {
    if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
    std::vector<int> ids;
    std::string error;
    if (!sp_->Encode(std::string(text), &ids, &error)) return absl::InternalError(error);
    return std::vector<int32_t>(ids.begin(), ids.end());
  }
  std::string Decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> in;
    for (int32_t id : ids) {
      if (id >= 0 && id < sp_->piece_size()) in.push_back(id);
    }
    return sp_->Decode(in);
  }
  std::string TokenBytes(int32_t id) const override {
    if (id < 0 || id >= sp_->piece_size()) return "";
    if (sp_->IsByte(id)) {
      const std::string piece = sp_->IdToPiece(id);  // "<0xNN>"
      return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
    }
    if (sp_->IsControl(id) || sp_->IsUnknown(id)) return "";
    return absl::StrReplaceAll(sp_->IdToPiece(id), {{"\xe2\x96\x81", " "}});
  }
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return sp_->bos_id(); }
  int32_t eos_id() const override { return sp_->eos_id(); }
  int32_t SpecialTokenId(absl::string_view text) const override {
    const int id = sp_->PieceToId(std::string(text));
    return id == sp_->unk_id() && text != "<unk>" ? -1 : id;
  }
  std::string name() const override { return "sentencepiece"; }

 private:
  std::unique_ptr<SentencePieceModel> sp_;
  int32_t vocab_size_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> NewSentencePieceTokenizer(const std::string& path,
                                                                     int32_t vocab_size) {
  std::string error;
  std::unique_ptr<SentencePieceModel> sp = SentencePieceModel::Load(path, &error);
  if (!sp) return absl::InvalidArgumentError(absl::StrCat("cannot load ", path, ": ", error));
  if (sp->piece_size() > vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has ", sp->piece_size(),
                                                   " pieces but the model's vocab_size is ",
                                                   vocab_size));
  }
  return std::unique_ptr<Tokenizer>(new SentencePieceTokenizer(std::move(sp), vocab_size));
}

}  // namespace tome::engine
