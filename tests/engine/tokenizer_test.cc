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

// SentencePiece through the dlopen'ed shim, on a model trained here with Debian's spm_train.
#include <fstream>

#include "tests/testutil/process.h"
#include "tests/testutil/temp_dir.h"

namespace tome::engine {
namespace {

TEST(TokenizerTest, SentencePieceModelTrainedWithSpmTrain) {
  testing::TempDir dir;
  {
    std::ofstream text(dir.Sub("corpus.txt"));
    for (int i = 0; i < 300; ++i) {
      text << "The lighthouse keeper wrote the weather in a green ledger, line " << i << ".\n"
           << "Ships passed Gull Rock at night; the lamp turned twice every fifteen seconds.\n";
    }
  }
  std::string out;
  ASSERT_EQ(testing::RunCommand({"/usr/bin/spm_train", "--input=" + dir.Sub("corpus.txt"),
                                 "--model_prefix=" + dir.Sub("tokenizer"), "--vocab_size=330",
                                 "--byte_fallback=true", "--character_coverage=1.0",
                                 "--user_defined_symbols=<|im_start|>,<|im_end|>"},
                                &out),
            0)
      << "spm_train (Debian package sentencepiece) failed";
  auto tok = LoadTokenizer(dir.path(), 512);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->name(), "sentencepiece");
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_id(), 2);
  // Round trip, including characters never seen in training (byte fallback).
  const std::string text = "The keeper wrote: ƒ 世界 🙂";
  auto ids = (*tok)->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_LT(ids->size(), text.size());  // real merges happened
  EXPECT_EQ((*tok)->Decode(*ids), text);
  StreamDecoder stream(tok->get());
  std::string streamed;
  for (int32_t id : *ids) streamed += stream.Next(id);
  streamed += stream.Flush();
  EXPECT_EQ(streamed, " " + text);  // the dummy-prefix space of SentencePiece
  EXPECT_GE((*tok)->SpecialTokenId("<|im_start|>"), 0);
  EXPECT_EQ((*tok)->SpecialTokenId("<|nothing|>"), -1);
  // A vocabulary larger than the model's is refused.
  EXPECT_FALSE(LoadTokenizer(dir.path(), 300).ok());
}

}  // namespace
}  // namespace tome::engine
