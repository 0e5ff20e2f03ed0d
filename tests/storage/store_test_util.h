// Shared pieces of the storage tests: an in-memory store, and RocksDB opened directly on a
// store's files to look at (or damage) raw keys and values.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/options.h"
#include "tome/storage/context_store.h"

namespace tome::storage::testing {

#define TOME_ASSERT_OK(expr)               \
  do {                                     \
    const ::absl::Status tome_s_ = (expr); \
    ASSERT_TRUE(tome_s_.ok()) << tome_s_;  \
  } while (false)

#define TOME_EXPECT_OK(expr)               \
  do {                                     \
    const ::absl::Status tome_s_ = (expr); \
    EXPECT_TRUE(tome_s_.ok()) << tome_s_;  \
  } while (false)

// `lhs = *expr`, failing the test if `expr` (a StatusOr) is not OK.
#define TOME_ASSERT_OK_AND_ASSIGN(lhs, expr)               \
  auto TOME_TEST_CONCAT_(statusor_, __LINE__) = (expr);    \
  ASSERT_TRUE(TOME_TEST_CONCAT_(statusor_, __LINE__).ok()) \
      << TOME_TEST_CONCAT_(statusor_, __LINE__).status();  \
  lhs = std::move(TOME_TEST_CONCAT_(statusor_, __LINE__)).value()
#define TOME_TEST_CONCAT_(a, b) TOME_TEST_CONCAT_INNER_(a, b)
#define TOME_TEST_CONCAT_INNER_(a, b) a##b

inline constexpr char kFingerprint[] = "test-model-fingerprint";

// A store in memory: its files live in `env` and survive closing the store, so tests can
// reopen it or open it with RocksDB directly.
class MemStoreTest : public ::testing::Test {
 protected:
  MemStoreTest() : env_(rocksdb::NewMemEnv(rocksdb::Env::Default())) {}

  StoreOptions Options(const std::string& fingerprint = kFingerprint) const {
    StoreOptions options;
    options.model_fingerprint = fingerprint;
    options.env = env_.get();
    options.sync_writes = false;
    options.block_cache_bytes = 8 << 20;
    return options;
  }

  absl::StatusOr<std::unique_ptr<ContextStore>> OpenStore(
      const std::string& fingerprint = kFingerprint) {
    return ContextStore::Open(path_, Options(fingerprint));
  }

  const std::string path_ = "/mem/store";
  std::unique_ptr<rocksdb::Env> env_;
};

// RocksDB opened on a closed store's files, with every column family.
class RawDb {
 public:
  static std::unique_ptr<RawDb> Open(const std::string& path, rocksdb::Env* env) {
    rocksdb::DBOptions options;
    options.env = env;
    std::vector<std::string> names;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, path, &names);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return nullptr;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const std::string& name : names)
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    auto raw = std::unique_ptr<RawDb>(new RawDb());
    rocksdb::DB* db = nullptr;
    s = rocksdb::DB::Open(options, path, families, &raw->handles_, &db);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return nullptr;
    raw->db_.reset(db);
    for (size_t i = 0; i < names.size(); ++i) raw->by_name_[names[i]] = raw->handles_[i];
    return raw;
  }

  ~RawDb() {
    for (auto* handle : handles_) db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }

  rocksdb::DB* db() { return db_.get(); }
  // nullptr if the family does not exist.
  rocksdb::ColumnFamilyHandle* cf(const std::string& name) {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, handle] : by_name_) out.push_back(name);
    return out;
  }

  // Keys in [begin, end) of family `name`.
  std::vector<std::string> Keys(const std::string& name, const std::string& begin,
                                const std::string& end) {
    std::vector<std::string> keys;
    rocksdb::Slice upper(end);
    rocksdb::ReadOptions read_options;
    read_options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf(name)));
    for (it->Seek(begin); it->Valid(); it->Next()) keys.push_back(it->key().ToString());
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    return keys;
  }

 private:
  RawDb() = default;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
};

}  // namespace tome::storage::testing
