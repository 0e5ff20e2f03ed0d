// A thin wrapper over sentencepiece::SentencePieceProcessor with a std-only interface.
// SentencePiece's header declares absl::string_view itself, which clashes with Abseil's, so
// it is included only in sentencepiece_model.cc, a file that includes no Abseil header.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace tome::engine {

class SentencePieceModel {
 public:
  // nullptr and `error` set when the file cannot be loaded.
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

 private:
  SentencePieceModel();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace tome::engine
