// SentencePiece through libtome_sentencepiece.so (see sentencepiece_shim.cc for why it is
// loaded with dlopen rather than linked).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace tome::engine {

class SentencePieceModel {
 public:
  // nullptr and `error` set when the shim or the model file cannot be loaded.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path, std::string* error);
  ~SentencePieceModel();

  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const;
  std::string Decode(const std::vector<int>& ids) const;
  int piece_size() const;
  std::string IdToPiece(int id) const;
  int PieceToId(const std::string& piece) const;
  bool IsByte(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;

  struct Api;

 private:
  SentencePieceModel(const Api* api, void* handle) : api_(api), handle_(handle) {}
  const Api* api_;
  void* handle_;
};

}  // namespace tome::engine
