// Incremental append (issue 4): appending text prefills only the new tokens, from the last
// checkpoint, and gives what ingesting everything at once gives; old versions stay
// answerable; the state at any offset comes from the nearest checkpoint.
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"
#include "tests/testutil/test_models.h"
#include "tome_core.h"

namespace tome {
namespace {

class IncrementalTest : public testing::ServerTest {
 protected:
  services::TomeCore& core() { return *server_->core(); }
  const services::Principal owner_{storage::kDefaultTenant, false};
  storage::DocumentRecord Record(const std::string& id) {
    return core().GetDocument(owner_, std::stoull(id)).value().record;
  }
  std::string NewDocument() {
    grpc::ClientContext context;
    v1::CreateDocumentRequest create;
    create.set_name("doc");
    v1::Document document;
    EXPECT_TRUE(documents_->CreateDocument(&context, create, &document).ok());
    return document.id();
  }
  void WaitReady(const std::string& id) {
    grpc::ClientContext context;
    v1::WatchIngestionRequest watch;
    watch.set_document_id(id);
    auto reader = documents_->WatchIngestion(&context, watch);
    v1::IngestionProgress progress;
    while (reader->Read(&progress)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
  }
  // Next-token logits after the document's first `tokens` tokens and a question.
  std::vector<float> Logits(const std::string& id, int64_t tokens) {
    auto record = Record(id);
    int64_t recomputed = 0;
    std::string source;
    auto base = core().StateAt(record, tokens, &recomputed, &source).value();
    auto seq = core().engine().Fork(*base).value();
    auto question = core().engine().tokenizer().Encode("\nQuestion: who?\nAnswer:").value();
    return core().engine().Prefill(*seq, question).value();
  }

  const std::string a_ = std::string(1500, 'a') + " The first part ends here. ";
  const std::string b_ = std::string(900, 'b') + " The appended part.";
};

TEST_F(IncrementalTest, AppendPrefillsOnlyTheNewTokensAndEqualsOneShot) {
  const std::string split = NewDocument();
  ASSERT_TRUE(Append(split, a_).ok());
  WaitReady(split);
  const int64_t before = core().ingestion().tokens_prefilled();
  v1::AppendTextResponse appended;
  ASSERT_TRUE(Append(split, b_, &appended).ok());
  WaitReady(split);
  EXPECT_EQ(core().ingestion().tokens_prefilled() - before, appended.appended_tokens());
  EXPECT_EQ(appended.appended_tokens(), static_cast<int64_t>(b_.size()));

  const std::string whole = NewDocument();
  ASSERT_TRUE(Append(whole, a_ + b_).ok());
  WaitReady(whole);
  const int64_t n = Get(whole).num_tokens();
  ASSERT_EQ(Get(split).num_tokens(), n);
  EXPECT_LT(testing::MaxRelativeError(Logits(split, n), Logits(whole, n)), 1e-4);

  std::string answer_split, answer_whole;
  v1::AskSummary s1, s2;
  ASSERT_TRUE(Ask(split, "who?", &answer_split, &s1).ok());
  ASSERT_TRUE(Ask(whole, "who?", &answer_whole, &s2).ok());
  EXPECT_EQ(answer_split, answer_whole);
}

TEST_F(IncrementalTest, OldVersionsStayAnswerable) {
  const std::string doc = NewDocument();
  ASSERT_TRUE(Append(doc, a_).ok());
  ASSERT_TRUE(Append(doc, b_).ok());
  WaitReady(doc);
  const v1::Document d = Get(doc);
  ASSERT_EQ(d.versions_size(), 2);
  EXPECT_EQ(d.versions(0).num_tokens(), static_cast<int64_t>(a_.size()) + 1);
  const std::string only_a = NewDocument();
  ASSERT_TRUE(Append(only_a, a_).ok());
  WaitReady(only_a);

  grpc::ClientContext context;
  v1::AskRequest request;
  request.set_document_id(doc);
  request.set_question("who?");
  request.set_max_tokens(12);
  request.set_version(1);
  auto reader = queries_->Ask(&context, request);
  v1::AskResponse response;
  v1::AskSummary summary;
  while (reader->Read(&response)) {
    if (response.has_summary()) summary = response.summary();
  }
  ASSERT_TRUE(reader->Finish().ok());
  std::string expected;
  v1::AskSummary expected_summary;
  ASSERT_TRUE(Ask(only_a, "who?", &expected, &expected_summary, 12).ok());
  EXPECT_EQ(summary.answer(), expected);
  EXPECT_EQ(summary.document_tokens(), d.versions(0).num_tokens());
  EXPECT_EQ(summary.document_prefill_tokens(), 0);  // version 1 ends on a checkpoint

  // A version that does not exist.
  grpc::ClientContext bad_context;
  request.set_version(7);
  auto bad = queries_->Ask(&bad_context, request);
  while (bad->Read(&response)) {
  }
  EXPECT_EQ(bad->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(IncrementalTest, StateAtAnyOffsetIsRecomputedFromTheNearestCheckpoint) {
  const std::string doc = NewDocument();
  ASSERT_TRUE(Append(doc, std::string(3000, 'c')).ok());  // checkpoints every 256 tokens
  WaitReady(doc);
  auto record = Record(doc);
  EXPECT_EQ(record.checkpoints.front(), 256);
  int64_t recomputed = 0;
  std::string source;
  ASSERT_TRUE(core().StateAt(record, 1000, &recomputed, &source).ok());
  EXPECT_EQ(recomputed, 1000 - 768);
  // The recomputed state equals a document that ends there.
  const std::string prefix = NewDocument();
  ASSERT_TRUE(Append(prefix, std::string(999, 'c')).ok());
  WaitReady(prefix);
  EXPECT_LT(testing::MaxRelativeError(Logits(doc, 1000), Logits(prefix, 1000)), 1e-4);
}

TEST_F(IncrementalTest, SectionsBecomeCheckpoints) {
  const std::string doc = NewDocument();
  grpc::ClientContext context;
  v1::AppendTextResponse response;
  auto writer = documents_->AppendText(&context, &response);
  for (int file = 0; file < 4; ++file) {
    v1::AppendTextRequest piece;
    if (file == 0) piece.set_document_id(doc);
    piece.set_section("src/file" + std::to_string(file) + ".py");
    piece.set_text(std::string(100 + 50 * file, 'x'));
    writer->Write(piece);
  }
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  WaitReady(doc);
  EXPECT_EQ(Get(doc).num_sections(), 4);
  auto sections = core().ListSections(owner_, std::stoull(doc)).value();
  ASSERT_EQ(sections.size(), 4u);
  EXPECT_EQ(sections[0].name, "src/file0.py");
  EXPECT_EQ(sections[0].begin_token, 1);  // after BOS
  EXPECT_EQ(sections[2].begin_byte, 100 + 150);
  // Sections at least checkpoint_tokens / 4 = 64 tokens apart are checkpoints.
  auto record = Record(doc);
  for (const auto& s : sections) {
    if (s.begin_token >= 64) {
      EXPECT_NE(std::find(record.checkpoints.begin(), record.checkpoints.end(), s.begin_token),
                record.checkpoints.end())
          << s.name;
    }
  }
}

}  // namespace
}  // namespace tome
