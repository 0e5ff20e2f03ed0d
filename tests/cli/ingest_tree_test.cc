#include "cli/ingest_tree.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace tome::cli {
namespace {

class IngestTreeTest : public ::testing::Test {
 protected:
  void Write(const std::string& rel, const std::string& content) {
    const std::filesystem::path path = std::filesystem::path(dir_.path()) / rel;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }

  std::vector<std::string> Files(const TreeOptions& options = {}) {
    auto listing = ListTree(dir_.path(), options);
    EXPECT_TRUE(listing.ok()) << listing.status();
    std::vector<std::string> out;
    for (const TreeFile& f : listing->files) out.push_back(f.path);
    return out;
  }

  std::string Reason(const std::string& path, const TreeOptions& options = {}) {
    auto listing = ListTree(dir_.path(), options);
    for (const SkippedPath& s : listing->skipped) {
      if (s.path == path) return s.reason;
    }
    return "<not skipped>";
  }

  testing::TempDir dir_;
};

TEST_F(IngestTreeTest, SortsByFullPathBytewise) {
  Write("b.txt", "b\n");
  Write("a/z.txt", "z\n");
  Write("a.txt", "a\n");
  Write("a/b/c.txt", "c\n");
  Write("B.txt", "B\n");
  Write("a-b.txt", "ab\n");
  // '-' (0x2d) < '.' (0x2e) < '/' (0x2f) < 'B' < 'a': independent of directory order.
  EXPECT_EQ(Files(), (std::vector<std::string>{"B.txt", "a-b.txt", "a.txt", "a/b/c.txt",
                                               "a/z.txt", "b.txt"}));
}

TEST_F(IngestTreeTest, HonoursRootAndNestedGitignoreAndSkipsGit) {
  Write(".gitignore", "*.o\nbuild/\n/secret.txt\n");
  Write("main.c", "int main;\n");
  Write("main.o", "obj\n");
  Write("secret.txt", "s\n");
  Write("build/out.c", "x\n");
  Write("src/secret.txt", "not anchored here\n");
  Write("src/.gitignore", "gen_*\n!gen_keep.c\n");
  Write("src/gen_a.c", "a\n");
  Write("src/gen_keep.c", "k\n");
  Write("other/gen_a.c", "nested rules stay in src/\n");
  Write(".git/HEAD", "ref: refs/heads/main\n");
  EXPECT_EQ(Files(), (std::vector<std::string>{".gitignore", "main.c", "other/gen_a.c",
                                               "src/.gitignore", "src/gen_keep.c",
                                               "src/secret.txt"}));
  EXPECT_EQ(Reason("build/"), "ignored");
  EXPECT_EQ(Reason(".git/"), "git metadata");
  EXPECT_EQ(Reason("src/gen_a.c"), "ignored");

  TreeOptions no_gitignore;
  no_gitignore.use_gitignore = false;
  EXPECT_EQ(Files(no_gitignore).size(), 10u);  // all but .git/HEAD
}

TEST_F(IngestTreeTest, ExtraExcludes) {
  Write("a.md", "a\n");
  Write("docs/b.md", "b\n");
  Write("c.c", "c\n");
  TreeOptions options;
  options.excludes = {"*.md"};
  EXPECT_EQ(Files(options), (std::vector<std::string>{"c.c"}));
  options.excludes = {"docs/"};
  EXPECT_EQ(Files(options), (std::vector<std::string>{"a.md", "c.c"}));
}

TEST_F(IngestTreeTest, SkipsBinaryLargeAndSymlinks) {
  Write("text.c", "ok\n");
  Write("image.png", std::string("\x89PNG\0\0", 6));
  Write("latin1.txt", "caf\xe9\n");
  Write("big.log", std::string(3000, 'x'));
  ASSERT_EQ(symlink("text.c", (dir_.path() + "/link.c").c_str()), 0);
  TreeOptions options;
  options.max_file_bytes = 2048;
  auto listing = ListTree(dir_.path(), options);
  ASSERT_TRUE(listing.ok());
  ASSERT_EQ(listing->files.size(), 1u);
  EXPECT_EQ(listing->files[0].path, "text.c");
  EXPECT_EQ(listing->files[0].bytes, 3);
  EXPECT_EQ(listing->total_bytes, 3);
  EXPECT_EQ(Reason("image.png", options), "binary (NUL byte)");
  EXPECT_EQ(Reason("latin1.txt", options), "not UTF-8");
  EXPECT_EQ(Reason("link.c", options), "symbolic link");
  EXPECT_NE(Reason("big.log", options).find("too large"), std::string::npos);
}

TEST_F(IngestTreeTest, RejectsANonDirectory) {
  Write("f.txt", "x\n");
  EXPECT_FALSE(ListTree(dir_.Sub("f.txt"), {}).ok());
  EXPECT_FALSE(ListTree(dir_.Sub("missing"), {}).ok());
}

TEST(FileSectionTextTest, HeaderAndTrailingNewline) {
  EXPECT_EQ(FileSectionText("src/main.c", "int x;\n"), "=== File: src/main.c ===\nint x;\n");
  EXPECT_EQ(FileSectionText("a", "no newline"), "=== File: a ===\nno newline\n");
  EXPECT_EQ(FileSectionText("empty", ""), "=== File: empty ===\n");
}

}  // namespace
}  // namespace tome::cli
