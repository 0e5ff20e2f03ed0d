// Unit tests of cluster mode's pure parts: rendezvous placement, the live-worker set built
// from etcd reads and watch events, router session ids, and the workers' replica store.
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "cluster/etcd_client.h"
#include "cluster/membership.h"
#include "cluster/rendezvous.h"
#include "cluster/replica_store.h"
#include "cluster/session_ids.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace tome::services::cluster {
namespace {

const std::vector<std::string> kWorkers = {"w1", "w2", "w3", "w4", "w5"};

TEST(RendezvousTest, RankingIsDeterministicAndIndependentOfInputOrder) {
  for (uint64_t doc = 1; doc < 200; ++doc) {
    std::vector<std::string> reversed(kWorkers.rbegin(), kWorkers.rend());
    EXPECT_EQ(RankWorkers(doc, kWorkers), RankWorkers(doc, reversed));
    EXPECT_EQ(RankWorkers(doc, kWorkers).size(), kWorkers.size());
  }
  EXPECT_TRUE(RankWorkers(7, {}).empty());
  EXPECT_EQ(RankWorkers(7, {"a", "a", "b"}).size(), 2u);  // duplicates once
}

TEST(RendezvousTest, SpreadsDocumentsEvenly) {
  std::map<std::string, int> owned;
  const int kDocs = 20000;
  for (uint64_t doc = 0; doc < kDocs; ++doc) {
    owned[RankWorkers((uint64_t{1} << 32) + doc * 7919, kWorkers)[0]]++;
  }
  for (const std::string& w : kWorkers) {
    EXPECT_NEAR(owned[w], kDocs / 5, kDocs / 5 * 0.1) << w;  // within 10% of a fair share
  }
}

TEST(RendezvousTest, ALeavingWorkerMovesOnlyItsDocumentsToTheirReplicaHolder) {
  std::vector<std::string> remaining = {"w1", "w2", "w4", "w5"};  // w3 leaves
  int moved = 0;
  for (uint64_t doc = 1; doc < 5000; ++doc) {
    const auto before = RankWorkers(doc, kWorkers);
    const auto after = RankWorkers(doc, remaining);
    if (before[0] == "w3") {
      ++moved;
      EXPECT_EQ(after[0], before[1]) << "the new owner must be the old replica holder";
    } else {
      EXPECT_EQ(after[0], before[0]) << "a document of a staying worker must not move";
    }
  }
  EXPECT_GT(moved, 0);
}

TEST(RendezvousTest, AJoiningWorkerTakesOnlyWhatItRanksFirstFor) {
  std::vector<std::string> grown = kWorkers;
  grown.push_back("w6");
  for (uint64_t doc = 1; doc < 5000; ++doc) {
    const auto before = RankWorkers(doc, kWorkers);
    const auto after = RankWorkers(doc, grown);
    if (after[0] != "w6") {
      EXPECT_EQ(after[0], before[0]);
    }
  }
}

EtcdKeyValue Kv(const std::string& key, const std::string& address) {
  return EtcdKeyValue{key, EncodeWorkerValue({"", address}), 1, 0};
}

TEST(WorkerSetTest, ResetAndWatchEventsKeepTheLiveSet) {
  const std::string prefix = WorkersPrefix("/tome");
  EXPECT_EQ(prefix, "/tome/workers/");
  WorkerSet set(prefix);
  set.Reset({Kv(prefix + "a", "10.0.0.1:7070"), Kv(prefix + "b", "10.0.0.2:7070"),
             Kv("/tome/workersX", "10.0.0.9:7070"),           // not under the prefix
             Kv(prefix + "c/extra", "10.0.0.3:7070"),         // nested: not a worker
             EtcdKeyValue{prefix + "d", "not json", 1, 0}});  // bad value: skipped
  EXPECT_EQ(set.ids(), (std::vector<std::string>{"a", "b"}));

  EtcdEvent join{EtcdEvent::Type::kPut, Kv(prefix + "c", "10.0.0.3:7070")};
  EtcdEvent leave{EtcdEvent::Type::kDelete, EtcdKeyValue{prefix + "a", "", 5, 0}};
  EXPECT_TRUE(set.Apply({join, leave}));
  EXPECT_EQ(set.ids(), (std::vector<std::string>{"b", "c"}));
  // A keep-alive rewrite of the same value, or a delete of an unknown worker: no change.
  EXPECT_FALSE(set.Apply({join}));
  EXPECT_FALSE(set.Apply({leave}));
  // A worker that moved (restarted on another port) is updated.
  EXPECT_TRUE(set.Apply({{EtcdEvent::Type::kPut, Kv(prefix + "c", "10.0.0.3:7071")}}));
  EXPECT_EQ(set.workers()[1].address, "10.0.0.3:7071");
  // A worker whose value turns bad is dropped rather than dialled.
  EXPECT_TRUE(set.Apply({{EtcdEvent::Type::kPut, EtcdKeyValue{prefix + "b", "{}", 9, 0}}}));
  EXPECT_EQ(set.ids(), (std::vector<std::string>{"c"}));
}

TEST(WorkerSetTest, WorkerValuesRoundTripAndRejectGarbage) {
  auto w = DecodeWorkerValue("x", EncodeWorkerValue({"x", "h:1"}));
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->address, "h:1");
  for (const std::string bad : {"", "[]", "{\"address\": 3}", "{\"address\": \"\"}", "\xff"}) {
    EXPECT_FALSE(DecodeWorkerValue("x", bad).ok()) << bad;
  }
}

TEST(EtcdClientTest, PrefixRangeEndCoversExactlyThePrefix) {
  EXPECT_EQ(PrefixRangeEnd("/tome/workers/"), "/tome/workers0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

TEST(SessionIdsTest, RoundTripAndRejectForeignIds) {
  const std::string id = EncodeSessionId("s0123456789abcdef", 4294967297);
  auto decoded = DecodeSessionId(id);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->first, "s0123456789abcdef");
  EXPECT_EQ(decoded->second, 4294967297u);
  for (const std::string bad :
       {"", "s0123", ".5", "s1.", "s1.0", "s1.x5", "s1.-5", "s1.99999999999999999999999"}) {
    EXPECT_EQ(DecodeSessionId(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

class ReplicaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::StoreOptions options;
    options.model_fingerprint = "test";
    options.sync_writes = false;
    auto store = storage::ContextStore::Open(dir_.Sub("store"), options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    replicas_ = std::make_unique<ReplicaStore>(store_.get());
  }

  static internal::v1::DocumentMeta Meta(uint64_t id, std::vector<int64_t> versions,
                                         uint64_t tenant = 7) {
    internal::v1::DocumentMeta meta;
    meta.set_document_id(absl::StrCat(id));
    meta.set_tenant_id(tenant);
    meta.set_name("doc");
    for (size_t i = 0; i < versions.size(); ++i) {
      auto* v = meta.add_versions();
      v->set_version(static_cast<int64_t>(i + 1));
      v->set_text_bytes(versions[i]);
    }
    return meta;
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::ContextStore> store_;
  std::unique_ptr<ReplicaStore> replicas_;
};

TEST_F(ReplicaStoreTest, AppendsInOrderAndReadsBackWhole) {
  const uint64_t id = uint64_t{1} << 40;
  ASSERT_FALSE(replicas_->State(id)->present());
  EXPECT_EQ(replicas_->Read(id).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(replicas_->Put(Meta(id, {5}), 0, "hello").ok());
  // Version 2 arrives in two pieces; the first leaves the replica incomplete.
  ASSERT_TRUE(replicas_->Put(Meta(id, {5, 11}), 5, " wo").ok());
  EXPECT_EQ(replicas_->Read(id).status().code(), absl::StatusCode::kFailedPrecondition);
  // A piece at the wrong offset is refused, and so are bytes past the last version.
  EXPECT_EQ(replicas_->Put(Meta(id, {5, 11}), 4, "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(replicas_->Put(Meta(id, {5, 11}), 8, "rld!!").status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(replicas_->Put(Meta(id, {5, 11}), 8, "rld").ok());
  auto read = replicas_->Read(id);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->second, "hello world");
  EXPECT_EQ(read->first.versions_size(), 2);
  EXPECT_EQ(replicas_->State(id)->text_bytes(), 11);
  // Offset 0 replaces everything.
  ASSERT_TRUE(replicas_->Put(Meta(id, {3}), 0, "new").ok());
  EXPECT_EQ(replicas_->Read(id)->second, "new");
  ASSERT_TRUE(replicas_->Delete(id).ok());
  EXPECT_FALSE(replicas_->State(id)->present());
  EXPECT_TRUE(replicas_->Delete(id).ok());  // idempotent
}

TEST_F(ReplicaStoreTest, ListsOnlyWhatTheTenantMayRead) {
  const uint64_t base = uint64_t{1} << 33;
  ASSERT_TRUE(replicas_->Put(Meta(base + 20, {1}, 7), 0, "a").ok());
  ASSERT_TRUE(replicas_->Put(Meta(base + 3, {1}, 7), 0, "b").ok());
  auto shared = Meta(base + 9, {1}, 8);
  shared.add_shared_with(7);
  ASSERT_TRUE(replicas_->Put(shared, 0, "c").ok());
  ASSERT_TRUE(replicas_->Put(Meta(base + 5, {1}, 8), 0, "d").ok());  // tenant 8's own
  auto listed = replicas_->List(7, 0, 10);
  ASSERT_TRUE(listed.ok());
  std::vector<std::string> ids;
  for (const auto& m : *listed) ids.push_back(m.document_id());
  EXPECT_EQ(ids, (std::vector<std::string>{absl::StrCat(base + 3), absl::StrCat(base + 9),
                                           absl::StrCat(base + 20)}));
  EXPECT_EQ(replicas_->List(7, base + 9, 10)->size(), 1u);
  EXPECT_EQ(replicas_->List(7, 0, 1)->size(), 1u);
}

TEST_F(ReplicaStoreTest, ChosenDocumentIdsAreCheckedByTheStore) {
  EXPECT_EQ(store_->CreateDocumentWithId(1, 5, "small").status().code(),
            absl::StatusCode::kInvalidArgument);
  const uint64_t id = storage::kMinChosenDocumentId + 12345;
  auto created = store_->CreateDocumentWithId(1, id, "chosen");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->id, id);
  EXPECT_EQ(store_->CreateDocumentWithId(1, id, "again").status().code(),
            absl::StatusCode::kAlreadyExists);
  // The store's own counter is unaffected.
  auto next = store_->CreateDocument(1, "counted");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->id, 1u);
}

TEST_F(ReplicaStoreTest, TextRangesCrossChunkBoundaries) {
  auto doc = store_->CreateDocument(1, "big");
  ASSERT_TRUE(doc.ok());
  // Two appends of 1.5 MiB: chunks of at most 1 MiB, so ranges meet several boundaries.
  std::string text;
  for (int a = 0; a < 2; ++a) {
    std::string part(3 << 19, 'a');
    for (size_t i = 0; i < part.size(); ++i) part[i] = static_cast<char>('a' + (i * 7 + a) % 26);
    std::vector<int32_t> tokens(part.size() / 4, 5);
    ASSERT_TRUE(store_->AppendText(1, doc->id, part, tokens).ok());
    text += part;
  }
  for (const auto& [begin, end] : std::vector<std::pair<int64_t, int64_t>>{
           {0, 10},
           {0, int64_t(text.size())},
           {(1 << 20) - 3, (1 << 20) + 3},
           {(3 << 19) - 1, (3 << 19) + 1},
           {int64_t(text.size()) - 5, int64_t(text.size()) + 100},
           {7, 7}}) {
    auto range = store_->ReadTextRange(1, doc->id, begin, end);
    ASSERT_TRUE(range.ok()) << range.status();
    const int64_t clamped = std::min<int64_t>(end, text.size());
    EXPECT_EQ(*range, text.substr(begin, clamped - begin)) << begin << ".." << end;
  }
  EXPECT_EQ(store_->ReadTextRange(1, doc->id, 5, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tome::services::cluster
