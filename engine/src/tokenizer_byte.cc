// Byte-level tokenizer for small models: 0 <unk>, 1 <s>, 2 </s>, then the 256 bytes.
#include "absl/strings/str_cat.h"
#include "tome/engine/tokenizer.h"

namespace tome::engine {
namespace {

constexpr int32_t kByteOffset = 3;

class ByteTokenizer final : public Tokenizer {
 public:
  explicit ByteTokenizer(int32_t vocab_size) : vocab_size_(vocab_size) {}

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override {
    if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(kByteOffset + c);
    return ids;
  }
  std::string Decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) out += TokenBytes(id);
    return out;
  }
  std::string TokenBytes(int32_t id) const override {
    if (id >= kByteOffset && id < kByteOffset + 256) {
      return std::string(1, static_cast<char>(id - kByteOffset));
    }
    if (id == 1) return "<s>";
    if (id == 2) return "</s>";
    return "";  // <unk> and unused ids render as nothing
  }
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return 1; }
  int32_t eos_id() const override { return 2; }
  int32_t SpecialTokenId(absl::string_view text) const override {
    if (text == "<s>") return 1;
    if (text == "</s>") return 2;
    if (text == "<unk>") return 0;
    return -1;
  }
  std::string name() const override { return "byte"; }

 private:
  int32_t vocab_size_;
};

}  // namespace

std::unique_ptr<Tokenizer> NewByteTokenizer(int32_t vocab_size) {
  return std::make_unique<ByteTokenizer>(vocab_size);
}

}  // namespace tome::engine
