// libtome_sentencepiece.so: a C interface over SentencePiece, loaded by the engine with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
//
// Why: Debian's libsentencepiece.so carries its own copy of protobuf-lite and exports its
// symbols. Linked into a process that also loads libprotobuf.so (every gRPC program), the
// two copies interpose each other and the process crashes during static initialisation.
// Loaded this way, SentencePiece and its protobuf copy resolve to each other only.
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define TOME_SPM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

char* CopyString(const std::string& s, size_t* len) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  if (len) *len = s.size();
  return out;
}

sentencepiece::SentencePieceProcessor* Sp(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

}  // namespace

TOME_SPM_EXPORT void* tome_spm_load(const char* path, char** error) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    *error = CopyString(status.ToString(), nullptr);
    delete sp;
    return nullptr;
  }
  return sp;
}

TOME_SPM_EXPORT void tome_spm_free(void* handle) { delete Sp(handle); }
TOME_SPM_EXPORT void tome_spm_free_buffer(void* buffer) { std::free(buffer); }

TOME_SPM_EXPORT int tome_spm_encode(void* handle, const char* text, size_t len, int** ids,
                                    size_t* count, char** error) {
  std::vector<int> out;
  const auto status = Sp(handle)->Encode(std::string_view(text, len), &out);
  if (!status.ok()) {
    *error = CopyString(status.ToString(), nullptr);
    return 0;
  }
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.size() + 1)));
  std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  *count = out.size();
  return 1;
}

TOME_SPM_EXPORT char* tome_spm_decode(void* handle, const int* ids, size_t count, size_t* len) {
  std::string out;
  Sp(handle)->Decode(std::vector<int>(ids, ids + count), &out).IgnoreError();
  return CopyString(out, len);
}

TOME_SPM_EXPORT int tome_spm_piece_size(void* handle) { return Sp(handle)->GetPieceSize(); }
TOME_SPM_EXPORT char* tome_spm_id_to_piece(void* handle, int id, size_t* len) {
  return CopyString(Sp(handle)->IdToPiece(id), len);
}
TOME_SPM_EXPORT int tome_spm_piece_to_id(void* handle, const char* piece, size_t len) {
  return Sp(handle)->PieceToId(std::string_view(piece, len));
}
TOME_SPM_EXPORT int tome_spm_is_byte(void* handle, int id) { return Sp(handle)->IsByte(id); }
TOME_SPM_EXPORT int tome_spm_is_control(void* handle, int id) { return Sp(handle)->IsControl(id); }
TOME_SPM_EXPORT int tome_spm_is_unknown(void* handle, int id) { return Sp(handle)->IsUnknown(id); }
TOME_SPM_EXPORT int tome_spm_bos_id(void* handle) { return Sp(handle)->bos_id(); }
TOME_SPM_EXPORT int tome_spm_eos_id(void* handle) { return Sp(handle)->eos_id(); }
TOME_SPM_EXPORT int tome_spm_unk_id(void* handle) { return Sp(handle)->unk_id(); }
