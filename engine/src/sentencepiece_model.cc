#include "sentencepiece_model.h"

#include <sentencepiece_processor.h>

namespace tome::engine {

SentencePieceModel::SentencePieceModel()
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path,
                                                             std::string* error) {
  std::unique_ptr<SentencePieceModel> model(new SentencePieceModel());
  const auto status = model->sp_->Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return model;
}

bool SentencePieceModel::Encode(const std::string& text, std::vector<int>* ids,
                                std::string* error) const {
  const auto status = sp_->Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

std::string SentencePieceModel::Decode(const std::vector<int>& ids) const {
  std::string out;
  sp_->Decode(ids, &out).IgnoreError();
  return out;
}

int SentencePieceModel::piece_size() const { return sp_->GetPieceSize(); }
std::string SentencePieceModel::IdToPiece(int id) const { return sp_->IdToPiece(id); }
int SentencePieceModel::PieceToId(const std::string& piece) const { return sp_->PieceToId(piece); }
bool SentencePieceModel::IsByte(int id) const { return sp_->IsByte(id); }
bool SentencePieceModel::IsControl(int id) const { return sp_->IsControl(id); }
bool SentencePieceModel::IsUnknown(int id) const { return sp_->IsUnknown(id); }
int SentencePieceModel::bos_id() const { return sp_->bos_id(); }
int SentencePieceModel::eos_id() const { return sp_->eos_id(); }
int SentencePieceModel::unk_id() const { return sp_->unk_id(); }

}  // namespace tome::engine
