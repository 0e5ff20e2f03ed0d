// ContextStore through its public interface, on an in-memory Env (and on disk for reopening).
#include "tome/storage/context_store.h"

#include <algorithm>
#include <atomic>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store_test_util.h"
#include "tests/testutil/temp_dir.h"

namespace tome::storage {
namespace {

using ::testing::HasSubstr;
using testing::kFingerprint;
using testing::MemStoreTest;

std::vector<int32_t> Range(int32_t begin, int32_t end) {
  std::vector<int32_t> out(end - begin);
  std::iota(out.begin(), out.end(), begin);
  return out;
}

std::string Bytes(size_t size, char seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(seed + i * 7);
  return out;
}

class ContextStoreTest : public MemStoreTest {
 protected:
  void SetUp() override { TOME_ASSERT_OK_AND_ASSIGN(store_, OpenStore()); }
  void Reopen(const std::string& fingerprint = kFingerprint) {
    store_.reset();
    TOME_ASSERT_OK_AND_ASSIGN(store_, OpenStore(fingerprint));
  }
  DocumentId Create(const std::string& name, TenantId tenant = kDefaultTenant) {
    absl::StatusOr<DocumentRecord> record = store_->CreateDocument(tenant, name);
    EXPECT_TRUE(record.ok()) << record.status();
    return record.ok() ? record->id : 0;
  }

  std::unique_ptr<ContextStore> store_;
};

TEST_F(ContextStoreTest, OpenValidatesOptions) {
  EXPECT_EQ(OpenStore("").status().code(), absl::StatusCode::kInvalidArgument);
  StoreOptions options = Options();
  options.create_if_missing = false;
  EXPECT_FALSE(ContextStore::Open("/mem/absent", options).ok());
  EXPECT_EQ(ContextStore::Open("", Options()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ContextStoreTest, CreateGetAndList) {
  std::vector<DocumentId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Create(absl::StrCat("doc", i)));
  const DocumentId other = Create("other tenant's", 2);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<DocumentId>(ids.begin(), ids.end()).size(), 5u);
  EXPECT_GT(ids.front(), 0u);

  TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord record, store_->GetDocument(kDefaultTenant, ids[2]));
  EXPECT_EQ(record.tenant, kDefaultTenant);
  EXPECT_EQ(record.id, ids[2]);
  EXPECT_EQ(record.name, "doc2");
  EXPECT_EQ(record.version, 0);
  EXPECT_EQ(record.status, DocumentStatus::kEmpty);
  EXPECT_GT(record.created_micros, 0);
  EXPECT_EQ(record.created_micros, record.updated_micros);

  // Another tenant's document is not visible under this tenant.
  EXPECT_EQ(store_->GetDocument(kDefaultTenant, other).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetDocument(2, other)->name, "other tenant's");

  // Paging: id order, strictly after `after_id`, at most `limit`, this tenant only.
  std::vector<DocumentId> listed;
  DocumentId after = 0;
  for (;;) {
    TOME_ASSERT_OK_AND_ASSIGN(std::vector<DocumentRecord> page,
                              store_->ListDocuments(kDefaultTenant, after, 2));
    ASSERT_LE(page.size(), 2u);
    if (page.empty()) break;
    for (const DocumentRecord& r : page) listed.push_back(r.id);
    after = page.back().id;
  }
  EXPECT_EQ(listed, ids);
  EXPECT_EQ(store_->ListDocuments(2, 0, 10)->size(), 1u);
  EXPECT_TRUE(store_->ListDocuments(3, 0, 10)->empty());
  EXPECT_TRUE(store_->ListDocuments(kDefaultTenant, 0, 0)->empty());
  EXPECT_TRUE(store_->ListDocuments(kDefaultTenant, UINT64_MAX, 10)->empty());
  EXPECT_EQ(store_->ListDocuments(kDefaultTenant, 0, -1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ContextStoreTest, NamesAreValidated) {
  EXPECT_EQ(store_->CreateDocument(kDefaultTenant, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->CreateDocument(kDefaultTenant, std::string(257, 'n')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->CreateDocument(kDefaultTenant, "bad\xff").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->CreateDocument(kDefaultTenant, std::string(256, 'n')).ok());
}

TEST_F(ContextStoreTest, MissingDocumentsAreNotFound) {
  const DocumentId id = 12345;
  EXPECT_EQ(store_->GetDocument(kDefaultTenant, id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteDocument(kDefaultTenant, id).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->AppendText(kDefaultTenant, id, "x", {1}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadText(kDefaultTenant, id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadTokens(kDefaultTenant, id, 0, 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->SetStatus(kDefaultTenant, id, DocumentStatus::kReady, "").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DocumentBytes(kDefaultTenant, id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{1, 0, 0, 0, 0}).status().code(),
            absl::StatusCode::kNotFound);
  auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
  EXPECT_EQ(store_->CommitCheckpoint(*checkpoint, 0).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ContextStoreTest, AppendsAccumulateTextAndTokens) {
  const DocumentId id = Create("book");
  TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord r,
                            store_->AppendText(kDefaultTenant, id, "Hello, ", Range(0, 3)));
  EXPECT_EQ(r.version, 1);
  EXPECT_EQ(r.text_bytes, 7);
  EXPECT_EQ(r.num_tokens, 3);
  EXPECT_EQ(r.status, DocumentStatus::kIngesting);
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "world", Range(3, 5)).status());
  // Text whose tokens are not known yet (a tokenizer holding back a partial character).
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "!", {}).status());
  TOME_ASSERT_OK_AND_ASSIGN(r, store_->AppendText(kDefaultTenant, id, "\n", Range(5, 10)));
  EXPECT_EQ(r.version, 4);
  EXPECT_EQ(r.text_bytes, 14);
  EXPECT_EQ(r.num_tokens, 10);
  EXPECT_EQ(r.state_tokens, 0);

  TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord got, store_->GetDocument(kDefaultTenant, id));
  EXPECT_EQ(got.version, 4);
  EXPECT_EQ(got.num_tokens, 10);
  EXPECT_EQ(*store_->ReadText(kDefaultTenant, id), "Hello, world!\n");
  EXPECT_EQ(*store_->ReadTokens(kDefaultTenant, id, 0, 10), Range(0, 10));
  EXPECT_EQ(*store_->ReadTokens(kDefaultTenant, id, 2, 6), Range(2, 6));  // spans 3 appends
  EXPECT_EQ(*store_->ReadTokens(kDefaultTenant, id, 3, 4), Range(3, 4));
  EXPECT_EQ(*store_->ReadTokens(kDefaultTenant, id, 7, 1000), Range(7, 10));  // clamped
  EXPECT_TRUE(store_->ReadTokens(kDefaultTenant, id, 10, 20)->empty());
  EXPECT_TRUE(store_->ReadTokens(kDefaultTenant, id, 4, 4)->empty());
  EXPECT_EQ(store_->ReadTokens(kDefaultTenant, id, -1, 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ReadTokens(kDefaultTenant, id, 5, 4).status().code(),
            absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(store_->AppendText(kDefaultTenant, id, "", {1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetDocument(kDefaultTenant, id)->version, 4);
}

TEST_F(ContextStoreTest, NegativeTokenIdsRoundTrip) {
  const DocumentId id = Create("signed");
  const std::vector<int32_t> tokens = {-1, INT32_MIN, INT32_MAX, 0, 65536};
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "x", tokens).status());
  EXPECT_EQ(*store_->ReadTokens(kDefaultTenant, id, 0, 5), tokens);
}

TEST_F(ContextStoreTest, LargeAppendsSpanSeveralChunks) {
  const DocumentId id = Create("large");
  const std::string a = Bytes(2'500'000, 'a');
  const std::string b = Bytes(700'001, 'b');
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, a, Range(0, 600'000)).status());
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, b, Range(600'000, 700'000)).status());
  EXPECT_EQ(*store_->ReadText(kDefaultTenant, id), a + b);
  EXPECT_EQ(*store_->ReadTokens(kDefaultTenant, id, 0, 700'000), Range(0, 700'000));
  // Ranges that start inside a chunk and cross chunk and append boundaries.
  for (auto [begin, end] : std::vector<std::pair<int32_t, int32_t>>{
           {262'143, 262'145}, {1, 524'300}, {599'999, 600'001}, {650'000, 700'000}}) {
    EXPECT_EQ(*store_->ReadTokens(kDefaultTenant, id, begin, end), Range(begin, end))
        << begin << ".." << end;
  }
}

TEST_F(ContextStoreTest, SetStatusRecordsErrors) {
  const DocumentId id = Create("doc");
  TOME_ASSERT_OK(store_->SetStatus(kDefaultTenant, id, DocumentStatus::kFailed, "no memory"));
  TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord r, store_->GetDocument(kDefaultTenant, id));
  EXPECT_EQ(r.status, DocumentStatus::kFailed);
  EXPECT_EQ(r.error, "no memory");
  TOME_ASSERT_OK(store_->SetStatus(kDefaultTenant, id, DocumentStatus::kReady, "ignored"));
  TOME_ASSERT_OK_AND_ASSIGN(r, store_->GetDocument(kDefaultTenant, id));
  EXPECT_EQ(r.status, DocumentStatus::kReady);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(store_->SetStatus(kDefaultTenant, id, static_cast<DocumentStatus>(9), "").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ContextStoreTest, CheckpointIsInvisibleUntilCommitted) {
  const DocumentId id = Create("doc");
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "abcdef", Range(0, 6)).status());
  const StateKey lightning{1, 0, 0, 4, 0};
  const StateKey kv{2, 3, 1, 0, 4};
  const StateKey k1{3, 3, 1, 0, 1};
  const StateKey k2{4, 3, 1, 0, 1};
  const std::string big = Bytes(100'000, 'k');  // goes to a blob file

  auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
  checkpoint->Put(lightning, "lightning state");
  checkpoint->Put(kv, big);
  checkpoint->Put(k1, "k1");
  checkpoint->Put(k2, "");
  EXPECT_EQ(checkpoint->num_records(), 4);
  EXPECT_EQ(checkpoint->num_bytes(), 15 + 100'000 + 2);
  for (const StateKey& key : {lightning, kv, k1, k2}) {
    EXPECT_EQ(store_->GetState(kDefaultTenant, id, key).status().code(),
              absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(store_->GetDocument(kDefaultTenant, id)->state_tokens, 0);

  TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord r, store_->CommitCheckpoint(*checkpoint, 4));
  EXPECT_EQ(r.state_tokens, 4);
  EXPECT_EQ(r.status, DocumentStatus::kIngesting);
  EXPECT_EQ(*store_->GetState(kDefaultTenant, id, lightning), "lightning state");
  EXPECT_EQ(*store_->GetState(kDefaultTenant, id, kv), big);
  EXPECT_EQ(*store_->GetState(kDefaultTenant, id, k1), "k1");
  EXPECT_EQ(*store_->GetState(kDefaultTenant, id, k2), "");
  TOME_ASSERT_OK_AND_ASSIGN(r, store_->GetDocument(kDefaultTenant, id));
  EXPECT_EQ(r.state_tokens, 4);
  EXPECT_EQ(r.status, DocumentStatus::kIngesting);

  // Committed once only.
  EXPECT_EQ(store_->CommitCheckpoint(*checkpoint, 6).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// GetStates reads many records at once with exactly GetState's answer for each: exact keys,
// a shorter read of a longer block (from either a memtable or a blob file), absent records,
// invalid keys, and records of several column families mixed in one call.
TEST_F(ContextStoreTest, GetStatesAnswersEachKeyAsGetStateDoes) {
  const DocumentId id = Create("doc");
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "abcdefgh", Range(0, 8)).status());
  auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
  std::vector<StateKey> written;
  for (int32_t layer = 0; layer < 3; ++layer) {
    for (int64_t block = 0; block < 40; ++block) {
      const StateKey kv{2, layer, 1, block, 8};
      // Every third block large enough for a blob file.
      checkpoint->Put(kv, Bytes(block % 3 == 0 ? 70'000 : 100 + block,
                                static_cast<char>('a' + (layer * 40 + block) % 26)));
      written.push_back(kv);
    }
    const StateKey k1{3, layer, 0, 0, 2};
    checkpoint->Put(k1, absl::StrCat("summary ", layer));
    written.push_back(k1);
  }
  const StateKey lightning{1, 1, 0, 8, 0};
  checkpoint->Put(lightning, "lightning");
  written.push_back(lightning);
  TOME_ASSERT_OK(store_->CommitCheckpoint(*checkpoint, 8).status());

  std::vector<StateKey> asked;
  for (int i = static_cast<int>(written.size()) - 1; i >= 0; i -= 2) asked.push_back(written[i]);
  asked.push_back(StateKey{2, 1, 1, 5, 4});    // fewer rows: served from the 8-row record
  asked.push_back(StateKey{2, 1, 1, 99, 8});   // absent block
  asked.push_back(StateKey{2, 7, 1, 0, 8});    // absent layer
  asked.push_back(StateKey{1, 1, 0, 7, 0});    // a Lightning state at another length
  asked.push_back(StateKey{9, 0, 0, 0, 0});    // unknown kind
  asked.push_back(StateKey{2, -1, 0, 0, 8});   // negative layer
  asked.push_back(written[0]);                 // asked twice
  const std::vector<absl::StatusOr<std::string>> many =
      store_->GetStates(kDefaultTenant, id, asked);
  ASSERT_EQ(many.size(), asked.size());
  int found = 0;
  for (size_t i = 0; i < asked.size(); ++i) {
    SCOPED_TRACE(i);
    const absl::StatusOr<std::string> one = store_->GetState(kDefaultTenant, id, asked[i]);
    ASSERT_EQ(many[i].status(), one.status());
    if (one.ok()) {
      EXPECT_EQ(*many[i], *one);
      ++found;
    }
  }
  EXPECT_EQ(found, static_cast<int>((written.size() + 1) / 2) + 2);
  EXPECT_EQ(many[asked.size() - 6].status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(many[asked.size() - 3].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->GetStates(kDefaultTenant, id, {}).empty());

  // VisitStates shows each key's GetStates result once; a visitor's error ends the visit.
  std::vector<int> visits(asked.size(), 0);
  TOME_ASSERT_OK(store_->VisitStates(kDefaultTenant, id, asked,
                                     [&](size_t i, absl::StatusOr<absl::string_view> record) {
                                       ++visits[i];
                                       EXPECT_EQ(record.status(), many[i].status()) << i;
                                       if (record.ok() && many[i].ok())
                                         EXPECT_EQ(*record, *many[i]) << i;
                                       return absl::OkStatus();
                                     }));
  EXPECT_EQ(visits, std::vector<int>(asked.size(), 1));
  int calls = 0;
  const absl::Status stopped = store_->VisitStates(
      kDefaultTenant, id, asked, [&](size_t, absl::StatusOr<absl::string_view>) {
        return ++calls == 2 ? absl::CancelledError("enough") : absl::OkStatus();
      });
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 2);
}

TEST_F(ContextStoreTest, CheckpointReachingTheEndMakesTheDocumentReady) {
  const DocumentId id = Create("doc");
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "abc", Range(0, 3)).status());
  auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
  checkpoint->Put(StateKey{1, 0, 0, 3, 0}, "s");
  TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord r, store_->CommitCheckpoint(*checkpoint, 3));
  EXPECT_EQ(r.status, DocumentStatus::kReady);
  EXPECT_EQ(store_->GetDocument(kDefaultTenant, id)->status, DocumentStatus::kReady);
  // An append reopens ingestion; the watermark stays.
  TOME_ASSERT_OK_AND_ASSIGN(r, store_->AppendText(kDefaultTenant, id, "d", Range(3, 4)));
  EXPECT_EQ(r.status, DocumentStatus::kIngesting);
  EXPECT_EQ(r.state_tokens, 3);
  // An empty checkpoint just moves the watermark.
  auto empty = store_->BeginCheckpoint(kDefaultTenant, id);
  TOME_ASSERT_OK_AND_ASSIGN(r, store_->CommitCheckpoint(*empty, 4));
  EXPECT_EQ(r.status, DocumentStatus::kReady);
  EXPECT_EQ(r.state_tokens, 4);
}

TEST_F(ContextStoreTest, RejectedCheckpointsWriteNothing) {
  const DocumentId id = Create("doc");
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "abc", Range(0, 3)).status());
  const StateKey key{1, 0, 0, 3, 0};

  auto past_end = store_->BeginCheckpoint(kDefaultTenant, id);
  past_end->Put(key, "s");
  EXPECT_EQ(store_->CommitCheckpoint(*past_end, 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->CommitCheckpoint(*past_end, -1).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto bad_kind = store_->BeginCheckpoint(kDefaultTenant, id);
  bad_kind->Put(key, "s");
  bad_kind->Put(StateKey{9, 0, 0, 0, 0}, "unknown kind");
  absl::Status status = store_->CommitCheckpoint(*bad_kind, 3).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("kind 9"));

  auto negative = store_->BeginCheckpoint(kDefaultTenant, id);
  negative->Put(key, "s");
  negative->Put(StateKey{2, -1, 0, 0, 0}, "negative layer");
  EXPECT_EQ(store_->CommitCheckpoint(*negative, 3).status().code(),
            absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(store_->GetState(kDefaultTenant, id, key).status().code(), absl::StatusCode::kNotFound);
  TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord r, store_->GetDocument(kDefaultTenant, id));
  EXPECT_EQ(r.state_tokens, 0);
  EXPECT_EQ(r.status, DocumentStatus::kIngesting);

  // The rejected-for-range checkpoint can still commit at a valid watermark.
  TOME_ASSERT_OK(store_->CommitCheckpoint(*past_end, 3).status());
  EXPECT_EQ(*store_->GetState(kDefaultTenant, id, key), "s");
}

TEST_F(ContextStoreTest, CheckpointOfADeletedDocumentIsNotFound) {
  const DocumentId id = Create("doc");
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "abc", Range(0, 3)).status());
  auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
  checkpoint->Put(StateKey{1, 0, 0, 3, 0}, "s");
  TOME_ASSERT_OK(store_->DeleteDocument(kDefaultTenant, id));
  EXPECT_EQ(store_->CommitCheckpoint(*checkpoint, 3).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{1, 0, 0, 3, 0}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ContextStoreTest, StateKindsAreSeparateRecords) {
  const DocumentId id = Create("doc");
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "abc", Range(0, 3)).status());
  auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
  for (uint8_t kind = 1; kind <= 4; ++kind) {
    checkpoint->Put(StateKey{kind, 1, 2, 3, 4}, absl::StrCat("kind", kind));
  }
  TOME_ASSERT_OK(store_->CommitCheckpoint(*checkpoint, 3).status());
  for (uint8_t kind = 1; kind <= 4; ++kind) {
    EXPECT_EQ(*store_->GetState(kDefaultTenant, id, StateKey{kind, 1, 2, 3, 4}),
              absl::StrCat("kind", kind));
  }
  // Every field is part of the key.
  EXPECT_FALSE(store_->GetState(kDefaultTenant, id, StateKey{2, 1, 2, 3, 5}).ok());
  EXPECT_FALSE(store_->GetState(kDefaultTenant, id, StateKey{2, 1, 2, 4, 4}).ok());
  EXPECT_FALSE(store_->GetState(kDefaultTenant, id, StateKey{2, 1, 3, 3, 4}).ok());
  EXPECT_FALSE(store_->GetState(kDefaultTenant, id, StateKey{2, 2, 2, 3, 4}).ok());
  EXPECT_FALSE(store_->GetState(kDefaultTenant + 1, id, StateKey{2, 1, 2, 3, 4}).ok());
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{0, 1, 2, 3, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{5, 1, 2, 3, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{1, 0, 0, -3, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ContextStoreTest, DeleteRemovesOnlyThatDocument) {
  const DocumentId keep = Create("keep");
  const DocumentId gone = Create("gone");
  for (DocumentId id : {keep, gone}) {
    TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "abc", Range(0, 3)).status());
    auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
    checkpoint->Put(StateKey{2, 0, 0, 0, 3}, Bytes(10'000, 'x'));
    TOME_ASSERT_OK(store_->CommitCheckpoint(*checkpoint, 3).status());
  }
  TOME_ASSERT_OK(store_->DeleteDocument(kDefaultTenant, gone));
  EXPECT_EQ(store_->GetDocument(kDefaultTenant, gone).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadText(kDefaultTenant, gone).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetState(kDefaultTenant, gone, StateKey{2, 0, 0, 0, 3}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteDocument(kDefaultTenant, gone).code(), absl::StatusCode::kNotFound);
  TOME_ASSERT_OK_AND_ASSIGN(std::vector<DocumentRecord> listed,
                            store_->ListDocuments(kDefaultTenant, 0, 10));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id, keep);
  EXPECT_EQ(*store_->ReadText(kDefaultTenant, keep), "abc");
  EXPECT_EQ(*store_->GetState(kDefaultTenant, keep, StateKey{2, 0, 0, 0, 3}), Bytes(10'000, 'x'));
}

TEST_F(ContextStoreTest, IdsAreNeverReused) {
  const DocumentId a = Create("a");
  const DocumentId b = Create("b");
  TOME_ASSERT_OK(store_->DeleteDocument(kDefaultTenant, b));
  const DocumentId c = Create("c", 2);  // the counter is per store, not per tenant
  EXPECT_GT(c, b);
  Reopen();
  TOME_ASSERT_OK(store_->DeleteDocument(kDefaultTenant, a));
  Reopen();
  const DocumentId d = Create("d");
  EXPECT_GT(d, c);
  EXPECT_GT(Create("e"), d);
}

TEST_F(ContextStoreTest, AnotherModelsStateIsFailedPrecondition) {
  const DocumentId id = Create("doc");
  TOME_ASSERT_OK(store_->AppendText(kDefaultTenant, id, "abc", Range(0, 3)).status());
  auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
  checkpoint->Put(StateKey{1, 0, 0, 3, 0}, "state");
  TOME_ASSERT_OK(store_->CommitCheckpoint(*checkpoint, 3).status());

  Reopen("another-model");
  absl::Status status = store_->GetState(kDefaultTenant, id, StateKey{1, 0, 0, 3, 0}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("different model"));
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("document ", id)));
  // Documents and text do not depend on the model.
  EXPECT_EQ(*store_->ReadText(kDefaultTenant, id), "abc");

  Reopen(kFingerprint);
  EXPECT_EQ(*store_->GetState(kDefaultTenant, id, StateKey{1, 0, 0, 3, 0}), "state");
}

TEST_F(ContextStoreTest, DocumentBytesGrowWithData) {
  const DocumentId id = Create("doc");
  const DocumentId other = Create("other");
  TOME_ASSERT_OK_AND_ASSIGN(int64_t empty, store_->DocumentBytes(kDefaultTenant, id));
  EXPECT_GE(empty, 0);

  TOME_ASSERT_OK(
      store_->AppendText(kDefaultTenant, id, Bytes(200'000, 't'), Range(0, 50'000)).status());
  TOME_ASSERT_OK_AND_ASSIGN(int64_t with_text, store_->DocumentBytes(kDefaultTenant, id));
  EXPECT_GT(with_text, empty);

  auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
  for (int block = 0; block < 20; ++block) {
    checkpoint->Put(StateKey{2, 0, 0, block, 64}, Bytes(64 * 1024, static_cast<char>(block)));
  }
  TOME_ASSERT_OK(store_->CommitCheckpoint(*checkpoint, 50'000).status());
  TOME_ASSERT_OK_AND_ASSIGN(int64_t with_kv, store_->DocumentBytes(kDefaultTenant, id));
  // Memtable sizes are rough estimates (they came out below the text's alone once the KV was
  // added): only growth over the empty document is certain before a flush.
  EXPECT_GT(with_kv, empty);

  // After a reopen the data is in table and blob files rather than memtables.
  Reopen();
  TOME_ASSERT_OK_AND_ASSIGN(int64_t on_files, store_->DocumentBytes(kDefaultTenant, id));
  EXPECT_GT(on_files, 1'000'000);
  TOME_ASSERT_OK_AND_ASSIGN(int64_t other_bytes, store_->DocumentBytes(kDefaultTenant, other));
  EXPECT_LT(other_bytes, 100'000);
}

TEST_F(ContextStoreTest, ConcurrentAppendsToDifferentDocumentsLoseNothing) {
  constexpr int kThreads = 4;
  constexpr int kAppends = 50;
  std::vector<DocumentId> ids;
  for (int t = 0; t < kThreads; ++t) ids.push_back(Create(absl::StrCat("doc", t)));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAppends; ++i) {
        const std::vector<int32_t> tokens = {t * 1000 + 2 * i, t * 1000 + 2 * i + 1};
        if (!store_->AppendText(kDefaultTenant, ids[t], absl::StrCat(i, ","), tokens).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  for (int t = 0; t < kThreads; ++t) {
    TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord r, store_->GetDocument(kDefaultTenant, ids[t]));
    EXPECT_EQ(r.version, kAppends);
    EXPECT_EQ(r.num_tokens, 2 * kAppends);
    std::string expected;
    for (int i = 0; i < kAppends; ++i) absl::StrAppend(&expected, i, ",");
    EXPECT_EQ(*store_->ReadText(kDefaultTenant, ids[t]), expected);
    EXPECT_EQ(*store_->ReadTokens(kDefaultTenant, ids[t], 0, 2 * kAppends),
              Range(t * 1000, t * 1000 + 2 * kAppends));
  }
}

TEST_F(ContextStoreTest, ConcurrentAppendsAndCommitsToOneDocumentLoseNothing) {
  constexpr int kThreads = 4;
  constexpr int kAppends = 50;
  const DocumentId id = Create("shared");
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAppends; ++i) {
        // Each append's text and tokens name its thread and step, to find them all after.
        const int32_t token = t * 1000 + i;
        if (!store_->AppendText(kDefaultTenant, id, absl::StrCat("<", token, ">"), {token}).ok()) {
          ++failures;
        }
      }
    });
  }
  // Meanwhile, commit watermarks behind the appends: each sees a consistent record.
  threads.emplace_back([&] {
    for (int i = 0; i < 100; ++i) {
      absl::StatusOr<DocumentRecord> r = store_->GetDocument(kDefaultTenant, id);
      if (!r.ok()) {
        ++failures;
        continue;
      }
      auto checkpoint = store_->BeginCheckpoint(kDefaultTenant, id);
      checkpoint->Put(StateKey{1, 0, 0, r->num_tokens, 0}, "s");
      absl::StatusOr<DocumentRecord> committed =
          store_->CommitCheckpoint(*checkpoint, r->num_tokens);
      if (!committed.ok() || committed->num_tokens < r->num_tokens) ++failures;
    }
  });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);

  TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord r, store_->GetDocument(kDefaultTenant, id));
  EXPECT_EQ(r.version, kThreads * kAppends);
  EXPECT_EQ(r.num_tokens, kThreads * kAppends);
  EXPECT_LE(r.state_tokens, r.num_tokens);
  TOME_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> tokens,
                            store_->ReadTokens(kDefaultTenant, id, 0, r.num_tokens));
  TOME_ASSERT_OK_AND_ASSIGN(std::string text, store_->ReadText(kDefaultTenant, id));
  EXPECT_EQ(static_cast<int64_t>(text.size()), r.text_bytes);
  // Text and tokens were appended together: the i-th token is the i-th "<token>".
  std::string expected_text;
  for (int32_t token : tokens) absl::StrAppend(&expected_text, "<", token, ">");
  EXPECT_EQ(text, expected_text);
  std::vector<int32_t> sorted = tokens;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int32_t> expected;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kAppends; ++i) expected.push_back(t * 1000 + i);
  }
  EXPECT_EQ(sorted, expected);
  // Each thread's appends kept their order.
  std::vector<int> last(kThreads, -1);
  for (int32_t token : tokens) {
    EXPECT_GT(token % 1000, last[token / 1000]);
    last[token / 1000] = token % 1000;
  }
}

// On disk: closing and reopening the store finds every document, text, token and state.
TEST(ContextStoreOnDiskTest, ReopenFindsEverything) {
  tome::testing::TempDir dir;
  StoreOptions options;
  options.model_fingerprint = kFingerprint;
  options.sync_writes = false;
  const std::string path = dir.Sub("store");
  const std::string kv = Bytes(300'000, 'v');
  DocumentId a = 0;
  DocumentId b = 0;
  {
    TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store,
                              ContextStore::Open(path, options));
    TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord ra, store->CreateDocument(kDefaultTenant, "a"));
    TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord rb, store->CreateDocument(kDefaultTenant, "b"));
    a = ra.id;
    b = rb.id;
    TOME_ASSERT_OK(store->AppendText(kDefaultTenant, a, "first ", Range(0, 2)).status());
    TOME_ASSERT_OK(store->AppendText(kDefaultTenant, a, "second", Range(2, 4)).status());
    auto checkpoint = store->BeginCheckpoint(kDefaultTenant, a);
    checkpoint->Put(StateKey{1, 5, 0, 4, 0}, "lightning");
    checkpoint->Put(StateKey{2, 1, 0, 0, 4}, kv);
    checkpoint->Put(StateKey{3, 1, 0, 0, 1}, "summary");
    TOME_ASSERT_OK(store->CommitCheckpoint(*checkpoint, 4).status());
    TOME_ASSERT_OK(store->SetStatus(kDefaultTenant, b, DocumentStatus::kFailed, "why"));
  }
  {
    TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store,
                              ContextStore::Open(path, options));
    TOME_ASSERT_OK_AND_ASSIGN(std::vector<DocumentRecord> listed,
                              store->ListDocuments(kDefaultTenant, 0, 10));
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(listed[0].id, a);
    EXPECT_EQ(listed[0].name, "a");
    EXPECT_EQ(listed[0].version, 2);
    EXPECT_EQ(listed[0].num_tokens, 4);
    EXPECT_EQ(listed[0].state_tokens, 4);
    EXPECT_EQ(listed[0].status, DocumentStatus::kReady);
    EXPECT_EQ(listed[1].status, DocumentStatus::kFailed);
    EXPECT_EQ(listed[1].error, "why");
    EXPECT_EQ(*store->ReadText(kDefaultTenant, a), "first second");
    EXPECT_EQ(*store->ReadTokens(kDefaultTenant, a, 0, 4), Range(0, 4));
    EXPECT_EQ(*store->GetState(kDefaultTenant, a, StateKey{1, 5, 0, 4, 0}), "lightning");
    EXPECT_EQ(*store->GetState(kDefaultTenant, a, StateKey{2, 1, 0, 0, 4}), kv);
    EXPECT_EQ(*store->GetState(kDefaultTenant, a, StateKey{3, 1, 0, 0, 1}), "summary");
    TOME_ASSERT_OK_AND_ASSIGN(DocumentRecord c, store->CreateDocument(kDefaultTenant, "c"));
    EXPECT_GT(c.id, b);
    // A second handle on the same files is refused while this one is open.
    absl::StatusOr<std::unique_ptr<ContextStore>> second = ContextStore::Open(path, options);
    EXPECT_FALSE(second.ok());
  }
}

}  // namespace
}  // namespace tome::storage
