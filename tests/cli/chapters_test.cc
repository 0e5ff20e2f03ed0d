#include "cli/chapters.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cli/append_plan.h"
#include "gtest/gtest.h"

namespace tome::cli {
namespace {

std::string Heading(absl::string_view line) {
  std::string name;
  bool markdown = false;
  return IsChapterHeading(line, &name, &markdown) ? name : "<none>";
}

TEST(ChapterHeadingTest, RecognizesCommonForms) {
  EXPECT_EQ(Heading("Chapter 12"), "Chapter 12");
  EXPECT_EQ(Heading("CHAPTER XII"), "CHAPTER XII");
  EXPECT_EQ(Heading("Chapter 3: The Storm"), "Chapter 3: The Storm");
  EXPECT_EQ(Heading("CHAPTER I. Down the Rabbit-Hole"), "CHAPTER I. Down the Rabbit-Hole");
  EXPECT_EQ(Heading("BOOK II"), "BOOK II");
  EXPECT_EQ(Heading("Part One"), "Part One");
  EXPECT_EQ(Heading("  Chapter 7  "), "Chapter 7");
  EXPECT_EQ(Heading("Chapter 4 The Return"), "Chapter 4 The Return");
  EXPECT_EQ(Heading("Chapter 5\r"), "Chapter 5");
  EXPECT_EQ(Heading("# Introduction"), "Introduction");
  EXPECT_EQ(Heading("## Getting started ##"), "Getting started");
}

TEST(ChapterHeadingTest, RejectsProse) {
  EXPECT_EQ(Heading("Chapter 3 describes the storm in detail."), "<none>");
  EXPECT_EQ(Heading("chapter 3"), "<none>");  // lower case: prose
  EXPECT_EQ(Heading("Book II of the series was longer."), "<none>");
  EXPECT_EQ(Heading("Chapters 1"), "<none>");
  EXPECT_EQ(Heading("Chapter"), "<none>");
  EXPECT_EQ(Heading("Chapter Twelve hundred years ago"), "<none>");
  EXPECT_EQ(Heading("Chapter 12345"), "<none>");
  EXPECT_EQ(Heading("### Deep heading"), "<none>");
  EXPECT_EQ(Heading("#hashtag"), "<none>");
  EXPECT_EQ(Heading(" # indented"), "<none>");
  EXPECT_EQ(Heading(absl::StrCat("Chapter 1: ", std::string(120, 'x'))), "<none>");
}

std::string Filler(int n) { return std::string(n, 'x') + "\n"; }

TEST(DetectChaptersTest, FindsChaptersWithOffsets) {
  const std::string front = "THE BOOK\nby Someone\n\n";
  const std::string one = "Chapter 1\n" + Filler(300);
  const std::string two = "Chapter 2: Later\n" + Filler(300);
  const std::string text = front + one + two;
  const std::vector<Chapter> chapters = DetectChapters(text);
  ASSERT_EQ(chapters.size(), 2u);
  EXPECT_EQ(chapters[0].name, "Chapter 1");
  EXPECT_EQ(chapters[0].offset, front.size());
  EXPECT_EQ(chapters[1].name, "Chapter 2: Later");
  EXPECT_EQ(chapters[1].offset, front.size() + one.size());
}

TEST(DetectChaptersTest, NeedsAtLeastTwo) {
  EXPECT_TRUE(DetectChapters("Chapter 1\n" + Filler(500)).empty());
  EXPECT_TRUE(DetectChapters("no headings at all\n").empty());
  EXPECT_TRUE(DetectChapters("").empty());
}

TEST(DetectChaptersTest, SkipsTableOfContentsAndMergesPartTitles) {
  const std::string text =
      "Contents\n\nCHAPTER I. Start\nCHAPTER II. Middle\nCHAPTER III. End\n\n" + Filler(50) +
      "CHAPTER I. Start\n" + Filler(400) + "BOOK TWO\n\nCHAPTER II. Middle\n" + Filler(400) +
      "CHAPTER III. End\n" + Filler(400);
  const std::vector<Chapter> chapters = DetectChapters(text);
  ASSERT_EQ(chapters.size(), 3u);
  EXPECT_EQ(chapters[0].name, "CHAPTER I. Start");
  EXPECT_EQ(chapters[0].offset, text.find("CHAPTER I. Start\nxx"));
  EXPECT_EQ(chapters[1].name, "BOOK TWO / CHAPTER II. Middle");
  EXPECT_EQ(chapters[1].offset, text.find("BOOK TWO"));
  EXPECT_EQ(chapters[2].name, "CHAPTER III. End");
}

TEST(DetectChaptersTest, DropsTheLastContentsLineWhenAPrefaceFollows) {
  const std::string text = "CHAPTER I. A\nCHAPTER II. B\nCHAPTER III. C\n\nPREFACE\n" +
                           Filler(500) + "CHAPTER I. A\n" + Filler(400) + "CHAPTER II. B\n" +
                           Filler(400) + "CHAPTER III. C\n" + Filler(400);
  const std::vector<Chapter> chapters = DetectChapters(text);
  ASSERT_EQ(chapters.size(), 3u);
  EXPECT_EQ(chapters[0].offset, text.find("CHAPTER I. A\nxx"));
}

TEST(DetectChaptersTest, MarkdownHeadingsOutsideCodeFences) {
  const std::string text =
      "# Guide\n\nIntro.\n\n## Install\n\n```sh\n# not a heading\nmake\n```\n\n## Use\n\nRun it.\n";
  const std::vector<Chapter> chapters = DetectChapters(text);
  ASSERT_EQ(chapters.size(), 3u);
  EXPECT_EQ(chapters[0].name, "Guide");
  EXPECT_EQ(chapters[0].offset, 0u);
  EXPECT_EQ(chapters[1].name, "Install");
  EXPECT_EQ(chapters[2].name, "Use");
  EXPECT_EQ(chapters[2].offset, text.find("## Use"));
}

TEST(BookSpansTest, CoversTheWholeTextInOrder) {
  const std::string text = "Title\n\nChapter 1\n" + Filler(300) + "Chapter 2\n" + Filler(300);
  const std::vector<Span> spans = BookSpans(text, /*detect=*/true);
  ASSERT_EQ(spans.size(), 3u);
  EXPECT_EQ(spans[0].name, "");
  EXPECT_EQ(spans[0].begin, 0u);
  EXPECT_EQ(spans[1].name, "Chapter 1");
  EXPECT_EQ(spans[0].end, spans[1].begin);
  EXPECT_EQ(spans[1].end, spans[2].begin);
  EXPECT_EQ(spans[2].end, text.size());

  const std::vector<Span> plain = BookSpans(text, /*detect=*/false);
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0].name, "");
  EXPECT_EQ(plain[0].end, text.size());
}

TEST(ChapterSectionTextTest, NamedChaptersStartWithAHeaderLine) {
  EXPECT_EQ(ChapterSectionText("Chapter 2", "It rained.\n"),
            "=== Chapter: Chapter 2 ===\nIt rained.\n");
  EXPECT_EQ(ChapterSectionText("", "Preface.\n"), "Preface.\n");
}

TEST(ForEachPieceTest, OnlyTheFirstPieceNamesTheSection) {
  std::vector<std::pair<std::string, std::string>> pieces;
  auto emit = [&](absl::string_view section, absl::string_view piece) {
    pieces.emplace_back(std::string(section), std::string(piece));
    return true;
  };
  ASSERT_TRUE(ForEachPiece("a.c", "0123456789", 4, emit));
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0], std::make_pair(std::string("a.c"), std::string("0123")));
  EXPECT_EQ(pieces[1], std::make_pair(std::string(""), std::string("4567")));
  EXPECT_EQ(pieces[2], std::make_pair(std::string(""), std::string("89")));
  pieces.clear();
  ASSERT_TRUE(ForEachPiece("b", "", 4, emit));
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_FALSE(ForEachPiece("c", "0123456789", 4, [](auto, auto) { return false; }));
}

}  // namespace
}  // namespace tome::cli
