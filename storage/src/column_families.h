// The store's column families and their RocksDB options.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rocksdb/cache.h"
#include "rocksdb/options.h"

namespace tome::storage {

enum class Cf : int {
  kMeta = 0,  // document records (JSON) and the document id counter
  kText,      // text chunks
  kTokens,    // token id chunks (int32 little-endian)
  kState,     // Lightning states (StateKey kind 1)
  kKv,        // sparse-layer KV blocks (kind 2), in blob files
  kSummary,   // K1/K2 summary pages (kinds 3 and 4)
};
inline constexpr int kNumCfs = 6;
inline constexpr std::array<Cf, kNumCfs> kAllCfs = {Cf::kMeta,  Cf::kText, Cf::kTokens,
                                                    Cf::kState, Cf::kKv,   Cf::kSummary};

// "meta", "text", "tokens", "state", "kv", "summary".
absl::string_view CfName(Cf cf);

// Which column family holds state records of `kind`: 1 state, 2 kv, 3 and 4 summary.
// InvalidArgument for any other kind.
absl::StatusOr<Cf> CfForStateKind(uint8_t kind);

// Values of at least this many bytes go to blob files in the CFs that use them.
inline constexpr uint64_t kMinBlobSize = 4096;
// Whether `cf` keeps its large values in blob files (kv and state: multi-KiB values that
// compaction would otherwise rewrite again and again).
bool CfUsesBlobFiles(Cf cf);

// The options of `cf`; every family shares `block_cache`.
rocksdb::ColumnFamilyOptions CfOptions(Cf cf, const std::shared_ptr<rocksdb::Cache>& block_cache);

}  // namespace tome::storage
