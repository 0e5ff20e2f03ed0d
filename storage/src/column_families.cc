#include "column_families.h"

#include "absl/strings/str_cat.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"

namespace tome::storage {

absl::string_view CfName(Cf cf) {
  switch (cf) {
    case Cf::kMeta:
      return "meta";
    case Cf::kText:
      return "text";
    case Cf::kTokens:
      return "tokens";
    case Cf::kState:
      return "state";
    case Cf::kKv:
      return "kv";
    case Cf::kSummary:
      return "summary";
  }
  return "unknown";
}

absl::StatusOr<Cf> CfForStateKind(uint8_t kind) {
  switch (kind) {
    case 1:
      return Cf::kState;
    case 2:
      return Cf::kKv;
    case 3:
    case 4:
      return Cf::kSummary;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown state record kind ", static_cast<int>(kind),
                       " (1 Lightning state, 2 KV block, 3 and 4 summary pages)"));
  }
}

bool CfUsesBlobFiles(Cf cf) { return cf == Cf::kState || cf == Cf::kKv; }

rocksdb::ColumnFamilyOptions CfOptions(Cf cf, const std::shared_ptr<rocksdb::Cache>& block_cache) {
  rocksdb::ColumnFamilyOptions options;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = block_cache;
  // Index and filter blocks count against the one cache, so memory stays bounded.
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  // Most reads are point lookups of a record or a state value.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  if (CfUsesBlobFiles(cf)) {
    options.enable_blob_files = true;
    options.min_blob_size = kMinBlobSize;
    // Float tensors barely compress; don't spend CPU on it.
    options.blob_compression_type = rocksdb::kNoCompression;
    // Deleted documents' blobs are reclaimed by compaction.
    options.enable_blob_garbage_collection = true;
  }
  return options;
}

}  // namespace tome::storage
