// The key layout: numeric order is byte order, and every key of a document lies in
// [DocumentPrefix, DocumentPrefixEnd) of its column family.
#include "keys.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "column_families.h"
#include "gtest/gtest.h"

namespace tome::storage {
namespace {

constexpr uint64_t kMax = UINT64_MAX;

bool InRange(const std::string& key, TenantId tenant, DocumentId id) {
  const std::string end = DocumentPrefixEnd(tenant, id);
  return key >= DocumentPrefix(tenant, id) && (end.empty() || key < end);
}

TEST(KeysTest, DocumentPrefixIsBigEndianTenantThenDocument) {
  const std::string prefix = DocumentPrefix(0x0102030405060708, 0x1112131415161718);
  EXPECT_EQ(prefix, std::string("\x01\x02\x03\x04\x05\x06\x07\x08"
                                "\x11\x12\x13\x14\x15\x16\x17\x18"));
  EXPECT_EQ(TenantPrefix(0x0102030405060708), prefix.substr(0, 8));
  TenantId tenant = 0;
  DocumentId id = 0;
  ASSERT_TRUE(ParseDocumentPrefix(prefix + "suffix", &tenant, &id));
  EXPECT_EQ(tenant, 0x0102030405060708u);
  EXPECT_EQ(id, 0x1112131415161718u);
  EXPECT_FALSE(ParseDocumentPrefix(prefix.substr(0, 15), &tenant, &id));
}

TEST(KeysTest, ByteOrderIsTenantThenDocumentOrder) {
  std::mt19937_64 rng(7);
  std::vector<std::pair<TenantId, DocumentId>> ids = {{0, 0},   {0, 1},    {1, 0},    {1, 255},
                                                      {1, 256}, {kMax, 0}, {0, kMax}, {kMax, kMax}};
  for (int i = 0; i < 200; ++i) ids.emplace_back(rng() % 4, rng() >> (rng() % 64));
  for (const auto& a : ids) {
    for (const auto& b : ids) {
      EXPECT_EQ(a < b, DocumentPrefix(a.first, a.second) < DocumentPrefix(b.first, b.second));
    }
  }
}

TEST(KeysTest, PrefixEndIsTheNextPrefix) {
  EXPECT_EQ(DocumentPrefixEnd(1, 7), DocumentPrefix(1, 8));
  EXPECT_EQ(DocumentPrefixEnd(1, 255), DocumentPrefix(1, 256));
  EXPECT_EQ(DocumentPrefixEnd(1, kMax), DocumentPrefix(2, 0));  // carries into the tenant
  EXPECT_EQ(DocumentPrefixEnd(kMax, kMax), "");                 // no next key exists
}

TEST(KeysTest, EveryKeyOfADocumentIsInItsRangeAndNoOtherKeyIs) {
  const StateKey smallest{0, 0, 0, 0, 0};
  const StateKey largest{255, INT32_MAX, INT32_MAX, INT64_MAX, INT64_MAX};
  for (const auto& [tenant, id] :
       std::vector<std::pair<TenantId, DocumentId>>{{1, 1}, {1, 255}, {2, kMax}, {kMax, 3}}) {
    const std::vector<std::string> own = {
        DocumentPrefix(tenant, id),          ChunkKey(tenant, id, 0),
        ChunkKey(tenant, id, INT64_MAX),     EncodeStateKey(tenant, id, smallest),
        EncodeStateKey(tenant, id, largest),
    };
    for (const std::string& key : own) {
      EXPECT_TRUE(InRange(key, tenant, id));
      EXPECT_EQ(key.substr(0, kDocumentPrefixSize), DocumentPrefix(tenant, id));
    }
    // The neighbours' keys are outside.
    for (const auto& [t, d] : std::vector<std::pair<TenantId, DocumentId>>{
             {tenant, id - 1}, {tenant, id + 1}, {tenant + 1, id}, {tenant - 1, id}}) {
      if (t == tenant && d == id) continue;
      EXPECT_FALSE(InRange(DocumentPrefix(t, d), tenant, id));
      EXPECT_FALSE(InRange(ChunkKey(t, d, INT64_MAX), tenant, id));
      EXPECT_FALSE(InRange(EncodeStateKey(t, d, largest), tenant, id));
      EXPECT_FALSE(InRange(EncodeStateKey(t, d, smallest), tenant, id));
    }
  }
}

TEST(KeysTest, CounterKeyIsInNoDocumentRange) {
  const std::string counter(kNextDocumentIdKey);
  EXPECT_EQ(counter.size(), 1u);
  EXPECT_LT(counter, DocumentPrefix(0, 0));
  EXPECT_FALSE(InRange(counter, 0, 0));
  EXPECT_FALSE(InRange(counter, 0, 1));
  EXPECT_FALSE(InRange(counter, 1, 1));
}

TEST(KeysTest, ChunkKeysSortByOffset) {
  std::vector<int64_t> offsets = {0, 1, 255, 256, 65535, 65536, int64_t{1} << 40, INT64_MAX};
  for (size_t i = 0; i < offsets.size(); ++i) {
    const std::string key = ChunkKey(1, 2, offsets[i]);
    EXPECT_EQ(key.size(), kChunkKeySize);
    EXPECT_EQ(ChunkOffset(key), offsets[i]);
    if (i > 0) {
      EXPECT_LT(ChunkKey(1, 2, offsets[i - 1]), key);
    }
  }
  EXPECT_EQ(ChunkOffset(DocumentPrefix(1, 2)), -1);
}

TEST(KeysTest, StateKeysRoundTripAndSortByFields) {
  std::mt19937_64 rng(11);
  std::vector<StateKey> keys;
  for (int i = 0; i < 300; ++i) {
    keys.push_back(StateKey{static_cast<uint8_t>(1 + rng() % 4), static_cast<int32_t>(rng() % 40),
                            static_cast<int32_t>(rng() % 3), static_cast<int64_t>(rng() % 5000),
                            static_cast<int64_t>(rng() % 65)});
  }
  keys.push_back(StateKey{2, INT32_MAX, INT32_MAX, INT64_MAX, INT64_MAX});
  auto fields = [](const StateKey& k) {
    return std::make_tuple(k.kind, k.layer, k.head, k.index, k.rows);
  };
  for (const StateKey& key : keys) {
    const std::string encoded = EncodeStateKey(3, 4, key);
    ASSERT_EQ(encoded.size(), kStateKeySize);
    StateKey decoded;
    ASSERT_TRUE(DecodeStateKey(encoded, &decoded));
    EXPECT_EQ(fields(decoded), fields(key));
  }
  for (const StateKey& a : keys) {
    for (const StateKey& b : keys) {
      EXPECT_EQ(fields(a) < fields(b), EncodeStateKey(3, 4, a) < EncodeStateKey(3, 4, b));
    }
  }
  StateKey unused;
  EXPECT_FALSE(DecodeStateKey(DocumentPrefix(3, 4), &unused));
}

TEST(KeysTest, StateKeyExactLayout) {
  const std::string key = EncodeStateKey(1, 2, StateKey{2, 3, 4, 5, 64});
  const std::string expected = DocumentPrefix(1, 2) + std::string("\x02", 1) +
                               std::string("\0\0\0\x03", 4) + std::string("\0\0\0\x04", 4) +
                               std::string("\0\0\0\0\0\0\0\x05", 8) +
                               std::string("\0\0\0\0\0\0\0\x40", 8);
  EXPECT_EQ(key, expected);
}

TEST(KeysTest, NegativeStateKeyFieldsAreRejected) {
  EXPECT_TRUE(ValidateStateKey(StateKey{1, 0, 0, 0, 0}).ok());
  EXPECT_EQ(ValidateStateKey(StateKey{1, -1, 0, 0, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateStateKey(StateKey{1, 0, -1, 0, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateStateKey(StateKey{1, 0, 0, -1, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateStateKey(StateKey{1, 0, 0, 0, -1}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ColumnFamiliesTest, StateKindsRouteToTheirFamilies) {
  EXPECT_EQ(*CfForStateKind(1), Cf::kState);
  EXPECT_EQ(*CfForStateKind(2), Cf::kKv);
  EXPECT_EQ(*CfForStateKind(3), Cf::kSummary);
  EXPECT_EQ(*CfForStateKind(4), Cf::kSummary);
  for (int kind : {0, 5, 255}) {
    EXPECT_EQ(CfForStateKind(static_cast<uint8_t>(kind)).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  std::vector<std::string> names;
  for (Cf cf : kAllCfs) names.emplace_back(CfName(cf));
  EXPECT_EQ(names, (std::vector<std::string>{"meta", "text", "tokens", "state", "kv", "summary"}));
  EXPECT_TRUE(CfUsesBlobFiles(Cf::kKv));
}

}  // namespace
}  // namespace tome::storage
