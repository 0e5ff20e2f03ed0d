// Versions, sections, checkpoints and their garbage, orphan collection, and disk faults.
#include <thread>

#include "absl/strings/str_cat.h"
#include "fault_injection_fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "keys.h"
#include "store_test_util.h"

namespace tome::storage {
namespace {

using ::testing::HasSubstr;
using testing::RawDb;

class LifecycleTest : public testing::MemStoreTest {
 protected:
  void SetUp() override {
    auto store = OpenStore();
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
  }
  DocumentId Create() { return store_->CreateDocument(kDefaultTenant, "doc").value().id; }
  std::vector<int32_t> Tokens(int n, int start = 0) {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; ++i) t[i] = start + i;
    return t;
  }

  std::unique_ptr<ContextStore> store_;
};

TEST_F(LifecycleTest, VersionsAndCheckpointsAreRecorded) {
  const DocumentId id = Create();
  store_->AppendText(kDefaultTenant, id, "aaaa", Tokens(4)).value();
  store_->AppendText(kDefaultTenant, id, "bbbbbb", Tokens(6)).value();
  auto cp = store_->BeginCheckpoint(kDefaultTenant, id);
  store_->CommitCheckpoint(*cp, 4).value();
  auto cp2 = store_->BeginCheckpoint(kDefaultTenant, id);
  DocumentRecord r = store_->CommitCheckpoint(*cp2, 10).value();
  ASSERT_EQ(r.versions.size(), 2u);
  EXPECT_EQ(r.versions[0].num_tokens, 4);
  EXPECT_EQ(r.versions[0].text_bytes, 4);
  EXPECT_EQ(r.versions[1].version, 2);
  EXPECT_EQ(r.versions[1].num_tokens, 10);
  EXPECT_EQ(r.checkpoints, (std::vector<int64_t>{4, 10}));
  // Survives a reopen (the record's JSON holds them).
  store_.reset();
  store_ = OpenStore().value();
  r = store_->GetDocument(kDefaultTenant, id).value();
  EXPECT_EQ(r.versions.size(), 2u);
  EXPECT_EQ(r.checkpoints, (std::vector<int64_t>{4, 10}));
}

TEST_F(LifecycleTest, SectionsAreStoredWithAbsoluteOffsets) {
  const DocumentId id = Create();
  store_->AppendText(kDefaultTenant, id, "== a.py ==\nx\n== b.py ==\ny\n", Tokens(20),
                     {{"a.py", 0, 0}, {"b.py", 13, 11}})
      .value();
  store_->AppendText(kDefaultTenant, id, "== c.py ==\nz\n", Tokens(8), {{"c.py", 0, 0}}).value();
  auto sections = store_->ListSections(kDefaultTenant, id).value();
  ASSERT_EQ(sections.size(), 3u);
  EXPECT_EQ(sections[1].name, "b.py");
  EXPECT_EQ(sections[1].begin_token, 11);
  EXPECT_EQ(sections[1].begin_byte, 13);
  EXPECT_EQ(sections[2].name, "c.py");
  EXPECT_EQ(sections[2].begin_token, 20);
  EXPECT_EQ(sections[2].begin_byte, 26);
  // Bad sections are refused and nothing is appended.
  EXPECT_EQ(store_->AppendText(kDefaultTenant, id, "q", Tokens(1), {{"", 0, 0}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->AppendText(kDefaultTenant, id, "q", Tokens(1), {{"x", 0, 5}}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetDocument(kDefaultTenant, id).value().num_tokens, 28);
  // Deleting the document removes its sections.
  ASSERT_TRUE(store_->DeleteDocument(kDefaultTenant, id).ok());
  EXPECT_EQ(store_->ListSections(kDefaultTenant, id).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LifecycleTest, LongerRecordsServeShorterReadsAndReplaceThem) {
  const DocumentId id = Create();
  store_->AppendText(kDefaultTenant, id, std::string(200, 'x'), Tokens(200)).value();
  // Block 1 written with 10 rows, later with 64: the 10-row record is deleted at commit.
  auto cp = store_->BeginCheckpoint(kDefaultTenant, id);
  cp->Put(StateKey{2, 0, 0, 1, 10}, "0123456789");
  store_->CommitCheckpoint(*cp, 74).value();
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{2, 0, 0, 1, 10}).value(), "0123456789");
  auto cp2 = store_->BeginCheckpoint(kDefaultTenant, id);
  cp2->Put(StateKey{2, 0, 0, 1, 64}, std::string(64, 'f'));
  store_->CommitCheckpoint(*cp2, 128).value();
  // The 10-row read is now served by the 64-row record (the engine takes its prefix).
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{2, 0, 0, 1, 10}).value(),
            std::string(64, 'f'));
  // Other blocks, layers and heads are not borrowed from.
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{2, 0, 0, 2, 10}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{2, 0, 1, 1, 10}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetState(kDefaultTenant, id, StateKey{2, 0, 0, 1, 65}).status().code(),
            absl::StatusCode::kNotFound);
  store_.reset();
  auto raw = RawDb::Open(path_, env_.get());
  const auto keys = raw->Keys("kv", DocumentPrefix(kDefaultTenant, id),
                              DocumentPrefixEnd(kDefaultTenant, id));
  ASSERT_EQ(keys.size(), 1u) << "the superseded 10-row record must be gone";
  StateKey decoded;
  ASSERT_TRUE(DecodeStateKey(keys[0], &decoded));
  EXPECT_EQ(decoded.rows, 64);
}

TEST_F(LifecycleTest, OrphanedDataIsCollectedOnOpen) {
  const DocumentId kept = Create();
  const DocumentId orphan = Create();
  store_->AppendText(kDefaultTenant, kept, "keep", Tokens(4)).value();
  store_->AppendText(kDefaultTenant, orphan, "lose", Tokens(4)).value();
  auto cp = store_->BeginCheckpoint(kDefaultTenant, orphan);
  cp->Put(StateKey{1, 1, 0, 4, 0}, "state");
  store_->CommitCheckpoint(*cp, 4).value();
  store_.reset();
  {  // Remove only the record, as if a crash had separated it from the data.
    auto raw = RawDb::Open(path_, env_.get());
    ASSERT_TRUE(raw->db()->Delete({}, raw->cf("meta"), DocumentPrefix(kDefaultTenant, orphan)).ok());
  }
  store_ = OpenStore().value();
  EXPECT_EQ(store_->CollectGarbage().value(), 0);  // already collected by Open
  store_.reset();
  auto raw = RawDb::Open(path_, env_.get());
  for (const std::string& family : {"text", "tokens", "state"}) {
    EXPECT_TRUE(raw->Keys(family, DocumentPrefix(kDefaultTenant, orphan),
                          DocumentPrefixEnd(kDefaultTenant, orphan))
                    .empty())
        << family;
    EXPECT_FALSE(raw->Keys(family, DocumentPrefix(kDefaultTenant, kept),
                           DocumentPrefixEnd(kDefaultTenant, kept))
                     .empty() && std::string(family) != "state")
        << family;
  }
}

class FaultTest : public ::testing::Test {
 protected:
  FaultTest()
      : mem_(rocksdb::NewMemEnv(rocksdb::Env::Default())),
        fs_(std::make_shared<testing::FaultInjectionFs>(mem_->GetFileSystem())),
        env_(rocksdb::NewCompositeEnv(fs_)) {}

  std::unique_ptr<ContextStore> Open() {
    StoreOptions options;
    options.model_fingerprint = "fp";
    options.env = env_.get();
    options.sync_writes = true;
    auto store = ContextStore::Open("/fault/store", options);
    EXPECT_TRUE(store.ok()) << store.status();
    return std::move(store).value();
  }

  std::unique_ptr<rocksdb::Env> mem_;
  std::shared_ptr<testing::FaultInjectionFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
};

TEST_F(FaultTest, DiskFullIsAClearErrorAndTheStoreRecovers) {
  auto store = Open();
  const DocumentId id = store->CreateDocument(kDefaultTenant, "doc").value().id;
  store->AppendText(kDefaultTenant, id, "before", {1, 2}).value();

  fs_->Arm(testing::Fault::kNoSpace);
  auto failed = store->AppendText(kDefaultTenant, id, "during", {3});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kResourceExhausted) << failed.status();
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("appending text"));
  auto cp = store->BeginCheckpoint(kDefaultTenant, id);
  cp->Put(StateKey{1, 0, 0, 2, 0}, "s");
  EXPECT_FALSE(store->CommitCheckpoint(*cp, 2).ok());
  // Reads keep working, and show only what was committed.
  EXPECT_EQ(store->ReadText(kDefaultTenant, id).value(), "before");
  EXPECT_GT(fs_->injected(), 0);

  fs_->Arm(testing::Fault::kNone);
  auto ok = store->AppendText(kDefaultTenant, id, "after", {4});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(store->ReadText(kDefaultTenant, id).value(), "beforeafter");
  EXPECT_EQ(store->ReadTokens(kDefaultTenant, id, 0, 10).value(), (std::vector<int32_t>{1, 2, 4}));
  ASSERT_TRUE(store->CommitCheckpoint(*cp, 3).ok());
  EXPECT_EQ(store->GetState(kDefaultTenant, id, StateKey{1, 0, 0, 2, 0}).value(), "s");
}

TEST_F(FaultTest, IoErrorsSurfaceAsUnavailable) {
  auto store = Open();
  const DocumentId id = store->CreateDocument(kDefaultTenant, "doc").value().id;
  fs_->Arm(testing::Fault::kIoError);
  auto status = store->AppendText(kDefaultTenant, id, "x", {1}).status();
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::IsUnavailable(status) || absl::IsInternal(status) || absl::IsDataLoss(status))
      << status;
  fs_->Arm(testing::Fault::kNone);
  EXPECT_TRUE(store->AppendText(kDefaultTenant, id, "y", {2}).ok());
  EXPECT_EQ(store->ReadText(kDefaultTenant, id).value(), "y");
}

}  // namespace
}  // namespace tome::storage

namespace tome::storage {
namespace {

TEST_F(LifecycleTest, OwnerIndexAndSharing) {
  const DocumentId a = store_->CreateDocument(7, "mine").value().id;
  EXPECT_EQ(store_->DocumentOwner(a).value(), 7u);
  EXPECT_EQ(store_->DocumentOwner(a + 100).status().code(), absl::StatusCode::kNotFound);
  DocumentRecord r = store_->SetSharing(7, a, false, {9, 8, 9}).value();
  EXPECT_EQ(r.shared_with, (std::vector<TenantId>{8, 9}));
  EXPECT_FALSE(r.is_public);
  store_.reset();
  store_ = OpenStore().value();  // survives a reopen, and is not mistaken for garbage
  r = store_->GetDocument(7, a).value();
  EXPECT_EQ(r.shared_with, (std::vector<TenantId>{8, 9}));
  EXPECT_EQ(store_->DocumentOwner(a).value(), 7u);
  ASSERT_TRUE(store_->DeleteDocument(7, a).ok());
  EXPECT_EQ(store_->DocumentOwner(a).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LifecycleTest, ServiceRecords) {
  ASSERT_TRUE(store_->PutRecord(RecordKind::kSession, "s-2", "two").ok());
  ASSERT_TRUE(store_->PutRecord(RecordKind::kSession, "s-1", "one").ok());
  ASSERT_TRUE(store_->PutRecord(RecordKind::kTenant, "s-3", "other kind").ok());
  EXPECT_EQ(store_->GetRecord(RecordKind::kSession, "s-1").value(), "one");
  auto all = store_->ListRecords(RecordKind::kSession, "s-").value();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, "s-1");
  EXPECT_EQ(all[1].second, "two");
  ASSERT_TRUE(store_->DeleteRecord(RecordKind::kSession, "s-1").ok());
  EXPECT_EQ(store_->GetRecord(RecordKind::kSession, "s-1").status().code(),
            absl::StatusCode::kNotFound);
  store_.reset();
  store_ = OpenStore().value();  // records are not garbage
  EXPECT_EQ(store_->GetRecord(RecordKind::kSession, "s-2").value(), "two");
  EXPECT_EQ(store_->GetRecord(RecordKind::kTenant, "s-3").value(), "other kind");
}

}  // namespace
}  // namespace tome::storage
