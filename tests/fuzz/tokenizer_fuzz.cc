// The tokenizers on arbitrary bytes: UTF-8 validation (the engine's and the store's must
// agree), the byte tokenizer's round trip, StreamDecoder over arbitrary token ids (every
// piece whole UTF-8), and SentencePiece on the default model when it is present.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "document_codec.h"  // storage/src: the store's own UTF-8 check
#include "tests/fuzz/fuzz_util.h"
#include "tome/engine/tokenizer.h"

namespace {

using tome::engine::Tokenizer;

const Tokenizer* SentencePiece() {
  static const std::unique_ptr<Tokenizer> tokenizer = []() -> std::unique_ptr<Tokenizer> {
#ifdef TOME_FUZZ_SPM_DIR
    if (std::filesystem::exists(TOME_FUZZ_SPM_DIR "/tokenizer.model")) {
      auto loaded = tome::engine::LoadTokenizer(TOME_FUZZ_SPM_DIR, 4096);
      if (loaded.ok()) return std::move(loaded).value();
    }
#endif
    return nullptr;
  }();
  return tokenizer.get();
}

// Token ids from the input, two bytes each, over the whole vocabulary and a little beyond.
std::vector<int32_t> Ids(const uint8_t* data, size_t size, int32_t vocab) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2) {
    ids.push_back(static_cast<int32_t>((data[i] << 8 | data[i + 1]) % (vocab + 8)) - 4);
  }
  return ids;
}

void CheckStream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  tome::engine::StreamDecoder decoder(&tokenizer);
  for (int32_t id : ids) FUZZ_CHECK(tome::engine::IsValidUtf8(decoder.Next(id)));
  FUZZ_CHECK(tome::engine::IsValidUtf8(decoder.Flush()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const bool valid = tome::engine::IsValidUtf8(text);
  FUZZ_CHECK(valid == tome::storage::IsValidUtf8(text));
  FUZZ_CHECK(tome::storage::IsValidUtf8(tome::storage::SanitizeUtf8(text)));

  const auto bytes = tome::engine::NewByteTokenizer(259);
  auto ids = bytes->Encode(text);
  FUZZ_CHECK(ids.ok() == valid);
  if (ids.ok()) FUZZ_CHECK(bytes->Decode(*ids) == text);
  CheckStream(*bytes, Ids(data, size, bytes->vocab_size()));

  if (const Tokenizer* sp = SentencePiece()) {
    auto sp_ids = sp->Encode(text);
    FUZZ_CHECK(sp_ids.ok() == valid);
    if (sp_ids.ok()) {
      for (int32_t id : *sp_ids) FUZZ_CHECK(id >= 0 && id < sp->vocab_size());
      CheckStream(*sp, *sp_ids);
      (void)sp->Decode(*sp_ids);
    }
    CheckStream(*sp, Ids(data, size, sp->vocab_size()));
  }
  return 0;
}
