#include "sentencepiece_model.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

namespace tome::engine {

struct SentencePieceModel::Api {
  void* (*load)(const char*, char**);
  void (*free_model)(void*);
  void (*free_buffer)(void*);
  int (*encode)(void*, const char*, size_t, int**, size_t*, char**);
  char* (*decode)(void*, const int*, size_t, size_t*);
  int (*piece_size)(void*);
  char* (*id_to_piece)(void*, int, size_t*);
  int (*piece_to_id)(void*, const char*, size_t);
  int (*is_byte)(void*, int);
  int (*is_control)(void*, int);
  int (*is_unknown)(void*, int);
  int (*bos_id)(void*);
  int (*eos_id)(void*);
  int (*unk_id)(void*);
};

namespace {

// Candidates for the shim: $TOME_SENTENCEPIECE_SHIM, the build tree, next to the program.
std::vector<std::string> ShimCandidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("TOME_SENTENCEPIECE_SHIM")) out.push_back(env);
  out.push_back(TOME_SENTENCEPIECE_SHIM_PATH);
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((self.parent_path() / "libtome_sentencepiece.so").string());
    out.push_back((self.parent_path() / "../lib/libtome_sentencepiece.so").string());
  }
  return out;
}

const SentencePieceModel::Api* LoadApi(std::string* error) {
  static std::once_flag once;
  static SentencePieceModel::Api api;
  static const SentencePieceModel::Api* loaded = nullptr;
  static std::string load_error;
  std::call_once(once, [] {
    void* lib = nullptr;
    for (const std::string& path : ShimCandidates()) {
#ifdef TOME_SENTENCEPIECE_DLMOPEN
      // Sanitizer builds: a namespace of its own isolates the shim as DEEPBIND does.
      lib = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
#else
      lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
#endif
      if (lib) break;
      load_error += std::string(dlerror()) + "; ";
    }
    if (!lib) {
      load_error = "cannot load libtome_sentencepiece.so (" + load_error +
                   "set TOME_SENTENCEPIECE_SHIM to its path)";
      return;
    }
    auto sym = [&](const char* name) { return dlsym(lib, name); };
    api.load = reinterpret_cast<decltype(api.load)>(sym("tome_spm_load"));
    api.free_model = reinterpret_cast<decltype(api.free_model)>(sym("tome_spm_free"));
    api.free_buffer = reinterpret_cast<decltype(api.free_buffer)>(sym("tome_spm_free_buffer"));
    api.encode = reinterpret_cast<decltype(api.encode)>(sym("tome_spm_encode"));
    api.decode = reinterpret_cast<decltype(api.decode)>(sym("tome_spm_decode"));
    api.piece_size = reinterpret_cast<decltype(api.piece_size)>(sym("tome_spm_piece_size"));
    api.id_to_piece = reinterpret_cast<decltype(api.id_to_piece)>(sym("tome_spm_id_to_piece"));
    api.piece_to_id = reinterpret_cast<decltype(api.piece_to_id)>(sym("tome_spm_piece_to_id"));
    api.is_byte = reinterpret_cast<decltype(api.is_byte)>(sym("tome_spm_is_byte"));
    api.is_control = reinterpret_cast<decltype(api.is_control)>(sym("tome_spm_is_control"));
    api.is_unknown = reinterpret_cast<decltype(api.is_unknown)>(sym("tome_spm_is_unknown"));
    api.bos_id = reinterpret_cast<decltype(api.bos_id)>(sym("tome_spm_bos_id"));
    api.eos_id = reinterpret_cast<decltype(api.eos_id)>(sym("tome_spm_eos_id"));
    api.unk_id = reinterpret_cast<decltype(api.unk_id)>(sym("tome_spm_unk_id"));
    if (!api.load || !api.encode || !api.unk_id) {
      load_error = "libtome_sentencepiece.so lacks its functions";
      return;
    }
    loaded = &api;
  });
  if (!loaded) *error = load_error;
  return loaded;
}

std::string TakeString(const SentencePieceModel::Api* api, char* s, size_t len) {
  std::string out(s, len);
  api->free_buffer(s);
  return out;
}

}  // namespace

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path,
                                                             std::string* error) {
  const Api* api = LoadApi(error);
  if (!api) return nullptr;
  char* err = nullptr;
  void* handle = api->load(path.c_str(), &err);
  if (!handle) {
    *error = err ? err : "unknown error";
    api->free_buffer(err);
    return nullptr;
  }
  return std::unique_ptr<SentencePieceModel>(new SentencePieceModel(api, handle));
}

SentencePieceModel::~SentencePieceModel() { api_->free_model(handle_); }

bool SentencePieceModel::Encode(const std::string& text, std::vector<int>* ids,
                                std::string* error) const {
  int* out = nullptr;
  size_t count = 0;
  char* err = nullptr;
  if (!api_->encode(handle_, text.data(), text.size(), &out, &count, &err)) {
    *error = err ? err : "encoding failed";
    api_->free_buffer(err);
    return false;
  }
  ids->assign(out, out + count);
  api_->free_buffer(out);
  return true;
}

std::string SentencePieceModel::Decode(const std::vector<int>& ids) const {
  size_t len = 0;
  char* s = api_->decode(handle_, ids.data(), ids.size(), &len);
  return TakeString(api_, s, len);
}

int SentencePieceModel::piece_size() const { return api_->piece_size(handle_); }
std::string SentencePieceModel::IdToPiece(int id) const {
  size_t len = 0;
  char* s = api_->id_to_piece(handle_, id, &len);
  return TakeString(api_, s, len);
}
int SentencePieceModel::PieceToId(const std::string& piece) const {
  return api_->piece_to_id(handle_, piece.data(), piece.size());
}
bool SentencePieceModel::IsByte(int id) const { return api_->is_byte(handle_, id); }
bool SentencePieceModel::IsControl(int id) const { return api_->is_control(handle_, id); }
bool SentencePieceModel::IsUnknown(int id) const { return api_->is_unknown(handle_, id); }
int SentencePieceModel::bos_id() const { return api_->bos_id(handle_); }
int SentencePieceModel::eos_id() const { return api_->eos_id(handle_); }
int SentencePieceModel::unk_id() const { return api_->unk_id(handle_); }

}  // namespace tome::engine
