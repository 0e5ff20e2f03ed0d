#include "cli/gitignore.h"

#include "gtest/gtest.h"

namespace tome::cli {
namespace {

TEST(GlobMatchTest, StarAndQuestionMarkStopAtSlashes) {
  EXPECT_TRUE(GlobMatch("*.o", "main.o"));
  EXPECT_FALSE(GlobMatch("*.o", "src/main.o"));
  EXPECT_TRUE(GlobMatch("src/*.c", "src/a.c"));
  EXPECT_FALSE(GlobMatch("src/*.c", "src/sub/a.c"));
  EXPECT_TRUE(GlobMatch("?.txt", "a.txt"));
  EXPECT_FALSE(GlobMatch("?.txt", "ab.txt"));
  EXPECT_FALSE(GlobMatch("a?b", "a/b"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("a*b*c", "axxbyyc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "axxbyy"));
}

TEST(GlobMatchTest, DoubleStar) {
  EXPECT_TRUE(GlobMatch("**/foo", "foo"));
  EXPECT_TRUE(GlobMatch("**/foo", "a/b/foo"));
  EXPECT_FALSE(GlobMatch("**/foo", "a/xfoo"));
  EXPECT_TRUE(GlobMatch("a/**/b", "a/b"));
  EXPECT_TRUE(GlobMatch("a/**/b", "a/x/y/b"));
  EXPECT_FALSE(GlobMatch("a/**/b", "ab"));
  EXPECT_TRUE(GlobMatch("abc/**", "abc/x"));
  EXPECT_TRUE(GlobMatch("abc/**", "abc/x/y.z"));
  EXPECT_FALSE(GlobMatch("abc/**", "abc"));
  // Not a whole component: an ordinary star.
  EXPECT_TRUE(GlobMatch("a**b", "axxb"));
  EXPECT_FALSE(GlobMatch("a**b", "a/b"));
}

TEST(GlobMatchTest, ClassesAndEscapes) {
  EXPECT_TRUE(GlobMatch("[abc].txt", "b.txt"));
  EXPECT_FALSE(GlobMatch("[abc].txt", "d.txt"));
  EXPECT_TRUE(GlobMatch("[a-c]x", "cx"));
  EXPECT_TRUE(GlobMatch("[!a-c]x", "dx"));
  EXPECT_FALSE(GlobMatch("[!a-c]x", "bx"));
  EXPECT_TRUE(GlobMatch("\\*.txt", "*.txt"));
  EXPECT_FALSE(GlobMatch("\\*.txt", "a.txt"));
  EXPECT_TRUE(GlobMatch("[x", "[x"));  // unterminated: literal
}

TEST(GitignoreMatcherTest, CommentsBlankLinesAndNegation) {
  GitignoreMatcher m;
  m.AddRules("", "# comment\n\n*.log\n!keep.log\n   \n");
  EXPECT_EQ(m.num_rules(), 2u);
  EXPECT_TRUE(m.Ignored("debug.log", false));
  EXPECT_TRUE(m.Ignored("sub/debug.log", false));
  EXPECT_FALSE(m.Ignored("keep.log", false));
  EXPECT_FALSE(m.Ignored("sub/keep.log", false));
  EXPECT_FALSE(m.Ignored("main.c", false));
}

TEST(GitignoreMatcherTest, LastMatchWins) {
  GitignoreMatcher m;
  m.AddRules("", "!a.txt\n*.txt\n");
  EXPECT_TRUE(m.Ignored("a.txt", false));
}

TEST(GitignoreMatcherTest, DirectoryOnlyPatterns) {
  GitignoreMatcher m;
  m.AddRules("", "build/\n");
  EXPECT_TRUE(m.Ignored("build", true));
  EXPECT_FALSE(m.Ignored("build", false));  // a file named build stays
  EXPECT_TRUE(m.Ignored("src/build", true));  // unanchored: at any level
}

TEST(GitignoreMatcherTest, AnchoredPatterns) {
  GitignoreMatcher m;
  m.AddRules("", "/TODO\ndoc/*.html\n");
  EXPECT_TRUE(m.Ignored("TODO", false));
  EXPECT_FALSE(m.Ignored("src/TODO", false));
  EXPECT_TRUE(m.Ignored("doc/index.html", false));
  EXPECT_FALSE(m.Ignored("src/doc/index.html", false));  // middle slash anchors
  EXPECT_FALSE(m.Ignored("doc/sub/index.html", false));
}

TEST(GitignoreMatcherTest, NestedFilesApplyBelowTheirDirectoryAndOverride) {
  GitignoreMatcher m;
  m.AddRules("", "*.gen\n");
  m.AddRules("lib", "!keep.gen\n/local.txt\n");
  EXPECT_TRUE(m.Ignored("a.gen", false));
  EXPECT_FALSE(m.Ignored("lib/keep.gen", false));
  EXPECT_TRUE(m.Ignored("keep.gen", false));  // the nested rule does not reach up
  EXPECT_TRUE(m.Ignored("lib/local.txt", false));
  EXPECT_FALSE(m.Ignored("lib/sub/local.txt", false));  // anchored to lib/
  EXPECT_FALSE(m.Ignored("local.txt", false));
  EXPECT_FALSE(m.Ignored("library/local.txt", false));  // "lib" is not a prefix of it
}

TEST(GitignoreMatcherTest, TrailingSpacesCrLfAndEscapes) {
  GitignoreMatcher m;
  m.AddRules("", "a.txt   \r\nb\\ \n\\#hash\n\\!bang\n");
  EXPECT_TRUE(m.Ignored("a.txt", false));
  EXPECT_TRUE(m.Ignored("b ", false));
  EXPECT_FALSE(m.Ignored("b", false));
  EXPECT_TRUE(m.Ignored("#hash", false));
  EXPECT_TRUE(m.Ignored("!bang", false));
}

TEST(GitignoreMatcherTest, DoubleStarRules) {
  GitignoreMatcher m;
  m.AddRules("", "**/logs\nout/**\nsrc/**/gen/\n");
  EXPECT_TRUE(m.Ignored("logs", true));
  EXPECT_TRUE(m.Ignored("a/b/logs", false));
  EXPECT_TRUE(m.Ignored("out/x/y", false));
  EXPECT_FALSE(m.Ignored("out", true));
  EXPECT_TRUE(m.Ignored("src/gen", true));
  EXPECT_TRUE(m.Ignored("src/a/b/gen", true));
  EXPECT_FALSE(m.Ignored("src/a/b/gen", false));
}

}  // namespace
}  // namespace tome::cli
