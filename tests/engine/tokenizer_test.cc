#include "tome/engine/tokenizer.h"

#include "gtest/gtest.h"

namespace tome::engine {
namespace {

TEST(TokenizerTest, ByteTokenizerRoundTrips) {
  auto tok = NewByteTokenizer(259);
  const std::string text = "Grüße, 世界! \n";
  auto ids = tok->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), text.size());
  EXPECT_EQ(tok->Decode(*ids), text);
}

TEST(TokenizerTest, RejectsInvalidUtf8) {
  auto tok = NewByteTokenizer(259);
  EXPECT_EQ(tok->Encode("ok \xff\xfe").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(IsValidUtf8("\xc0\x80"));        // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));    // surrogate
  EXPECT_FALSE(IsValidUtf8("\xe4\xb8"));        // truncated
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80"));  // emoji
}

TEST(TokenizerTest, StreamDecoderEmitsWholeCharacters) {
  auto tok = NewByteTokenizer(259);
  auto ids = tok->Encode("a世b").value();
  StreamDecoder dec(tok.get());
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(dec.Next(id));
  EXPECT_EQ(pieces, (std::vector<std::string>{"a", "", "", "世", "b"}));
  dec.Next(ids[1]);  // a dangling lead byte
  EXPECT_EQ(dec.Flush(), "\xef\xbf\xbd");
}

}  // namespace
}  // namespace tome::engine
