#include "cli/text_files.h"

#include <string>

#include "gtest/gtest.h"

namespace tome::cli {
namespace {

TEST(TextFilesTest, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii\n"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_FALSE(IsValidUtf8("caf\xe9"));                                  // Latin-1
  EXPECT_FALSE(IsValidUtf8("\xc3"));                                     // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));                                 // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));                             // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));                         // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));                                     // stray continuation
}

TEST(TextFilesTest, BinaryDetection) {
  EXPECT_EQ(BinaryReason("int main() { return 0; }\n"), "");
  EXPECT_EQ(BinaryReason(std::string("\x7f" "ELF\0\0\0", 7)), "binary (NUL byte)");
  EXPECT_EQ(BinaryReason("\x89PNG\r\n\x1a\n\xff\xfe"), "not UTF-8");
  // A NUL after the first 8 KiB is not what marks binaries, but it is valid UTF-8 text.
  std::string late(10000, 'a');
  late[9000] = '\0';
  EXPECT_EQ(BinaryReason(late), "");
  std::string early(10000, 'a');
  early[8000] = '\0';
  EXPECT_EQ(BinaryReason(early), "binary (NUL byte)");
}

}  // namespace
}  // namespace tome::cli
