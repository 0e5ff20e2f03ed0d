// The store's files as RocksDB sees them: the layout on disk, deletion leaving nothing behind,
// and damaged values caught on read.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "column_families.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "keys.h"
#include "nlohmann/json.hpp"
#include "rocksdb/metadata.h"
#include "store_test_util.h"
#include "tome/storage/context_store.h"
#include "value_codec.h"

namespace tome::storage {
namespace {

using ::testing::HasSubstr;
using testing::kFingerprint;
using testing::MemStoreTest;
using testing::RawDb;

class RawAccessTest : public MemStoreTest {
 protected:
  // A document with something in every column family.
  DocumentId Fill(ContextStore& store, const std::string& name) {
    absl::StatusOr<DocumentRecord> record = store.CreateDocument(kDefaultTenant, name);
    EXPECT_TRUE(record.ok()) << record.status();
    const DocumentId id = record->id;
    EXPECT_TRUE(store.AppendText(kDefaultTenant, id, "some text", {1, 2, 3}).ok());
    auto checkpoint = store.BeginCheckpoint(kDefaultTenant, id);
    checkpoint->Put(StateKey{1, 0, 0, 3, 0}, std::string(8192, 'l'));
    checkpoint->Put(StateKey{2, 0, 0, 0, 3}, std::string(20000, 'k'));
    checkpoint->Put(StateKey{3, 0, 0, 0, 1}, "k1");
    checkpoint->Put(StateKey{4, 0, 0, 0, 1}, "k2");
    EXPECT_TRUE(store.CommitCheckpoint(*checkpoint, 3).ok());
    return id;
  }

  std::vector<std::string> DocumentKeys(RawDb& raw, const std::string& family, DocumentId id) {
    return raw.Keys(family, DocumentPrefix(kDefaultTenant, id),
                    DocumentPrefixEnd(kDefaultTenant, id));
  }
};

TEST_F(RawAccessTest, LayoutOnDisk) {
  DocumentId id = 0;
  {
    TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore());
    id = Fill(*store, "doc");
  }
  std::unique_ptr<RawDb> raw = RawDb::Open(path_, env_.get());
  ASSERT_NE(raw, nullptr);
  EXPECT_THAT(raw->names(), ::testing::UnorderedElementsAre("default", "meta", "text", "tokens",
                                                            "state", "kv", "summary"));
  const std::string prefix = DocumentPrefix(kDefaultTenant, id);
  EXPECT_EQ(DocumentKeys(*raw, "meta", id), std::vector<std::string>{prefix});
  EXPECT_EQ(DocumentKeys(*raw, "text", id), std::vector<std::string>{ChunkKey(1, id, 0)});
  EXPECT_EQ(DocumentKeys(*raw, "tokens", id), std::vector<std::string>{ChunkKey(1, id, 0)});
  EXPECT_EQ(DocumentKeys(*raw, "state", id).size(), 1u);
  EXPECT_EQ(DocumentKeys(*raw, "kv", id).size(), 1u);
  EXPECT_EQ(DocumentKeys(*raw, "summary", id).size(), 2u);

  std::string value;
  ASSERT_TRUE(raw->db()->Get({}, raw->cf("meta"), prefix, &value).ok());
  const nlohmann::json record = nlohmann::json::parse(value);
  EXPECT_EQ(record.at("format"), 1);
  EXPECT_EQ(record.at("name"), "doc");
  EXPECT_EQ(record.at("status"), "ready");

  ASSERT_TRUE(raw->db()->Get({}, raw->cf("tokens"), ChunkKey(1, id, 0), &value).ok());
  EXPECT_EQ(value, std::string("\x01\0\0\0\x02\0\0\0\x03\0\0\0", 12));  // int32 little-endian

  ASSERT_TRUE(raw->db()->Get({}, raw->cf("meta"), std::string(kNextDocumentIdKey), &value).ok());
  EXPECT_EQ(ReadBigEndian64(value.data()), id + 1);

  ASSERT_TRUE(
      raw->db()
          ->Get({}, raw->cf("state"), EncodeStateKey(1, id, StateKey{1, 0, 0, 3, 0}), &value)
          .ok());
  EXPECT_EQ(value.size(), kStateValueHeaderSize + 8192);
  EXPECT_EQ(*DecodeStateValue(value, HashFingerprint(kFingerprint)), std::string(8192, 'l'));
}

TEST_F(RawAccessTest, LargeStateValuesLiveInBlobFiles) {
  {
    TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore());
    Fill(*store, "doc");
  }
  // Reopening replays the log into table files (and blob files) on disk.
  { TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore()); }
  std::unique_ptr<RawDb> raw = RawDb::Open(path_, env_.get());
  ASSERT_NE(raw, nullptr);
  for (const char* family : {"kv", "state"}) {
    rocksdb::ColumnFamilyMetaData meta;
    raw->db()->GetColumnFamilyMetaData(raw->cf(family), &meta);
    EXPECT_GE(meta.blob_file_count, 1u) << family;
  }
  rocksdb::ColumnFamilyMetaData summary;
  raw->db()->GetColumnFamilyMetaData(raw->cf("summary"), &summary);
  EXPECT_EQ(summary.blob_file_count, 0u);
}

TEST_F(RawAccessTest, DeleteLeavesNothingInAnyColumnFamily) {
  DocumentId gone = 0;
  DocumentId kept = 0;
  {
    TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore());
    const DocumentId before = Fill(*store, "before");
    gone = Fill(*store, "gone");
    kept = Fill(*store, "after");
    EXPECT_EQ(kept, gone + 1);
    EXPECT_EQ(before, gone - 1);
    TOME_ASSERT_OK(store->DeleteDocument(kDefaultTenant, gone));
  }
  std::unique_ptr<RawDb> raw = RawDb::Open(path_, env_.get());
  ASSERT_NE(raw, nullptr);
  for (Cf cf : kAllCfs) {
    const std::string family(CfName(cf));
    EXPECT_THAT(DocumentKeys(*raw, family, gone), ::testing::IsEmpty()) << family;
    EXPECT_THAT(DocumentKeys(*raw, family, gone - 1), ::testing::Not(::testing::IsEmpty()))
        << family;
    EXPECT_THAT(DocumentKeys(*raw, family, kept), ::testing::Not(::testing::IsEmpty())) << family;
  }
}

TEST_F(RawAccessTest, CorruptedStateValueIsDataLoss) {
  DocumentId id = 0;
  const StateKey damaged{2, 0, 0, 0, 3};
  const StateKey intact{1, 0, 0, 3, 0};
  {
    TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore());
    id = Fill(*store, "doc");
  }
  {
    std::unique_ptr<RawDb> raw = RawDb::Open(path_, env_.get());
    ASSERT_NE(raw, nullptr);
    const std::string key = EncodeStateKey(kDefaultTenant, id, damaged);
    std::string value;
    ASSERT_TRUE(raw->db()->Get({}, raw->cf("kv"), key, &value).ok());
    value[value.size() / 2] ^= 0x10;  // one flipped bit in the payload
    ASSERT_TRUE(raw->db()->Put({}, raw->cf("kv"), key, value).ok());
  }
  TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore());
  absl::Status status = store->GetState(kDefaultTenant, id, damaged).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("document ", id)));
  EXPECT_THAT(status.message(), HasSubstr("kind=2"));
  EXPECT_THAT(status.message(), HasSubstr("corrupt"));
  EXPECT_THAT(status.message(), HasSubstr("re-ingest"));
  EXPECT_EQ(*store->GetState(kDefaultTenant, id, intact), std::string(8192, 'l'));
}

TEST_F(RawAccessTest, DamagedRecordIsDataLoss) {
  DocumentId id = 0;
  {
    TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore());
    id = Fill(*store, "doc");
  }
  {
    std::unique_ptr<RawDb> raw = RawDb::Open(path_, env_.get());
    ASSERT_NE(raw, nullptr);
    ASSERT_TRUE(raw->db()->Put({}, raw->cf("meta"), DocumentPrefix(kDefaultTenant, id), "{").ok());
  }
  TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore());
  EXPECT_EQ(store->GetDocument(kDefaultTenant, id).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->ListDocuments(kDefaultTenant, 0, 10).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(RawAccessTest, NewerStoreFormatIsRefused) {
  { TOME_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ContextStore> store, OpenStore()); }
  {
    std::unique_ptr<RawDb> raw = RawDb::Open(path_, env_.get());
    ASSERT_NE(raw, nullptr);
    ASSERT_TRUE(raw->db()->Put({}, raw->cf("default"), "tome.store_format", "2").ok());
  }
  EXPECT_EQ(OpenStore().status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tome::storage
