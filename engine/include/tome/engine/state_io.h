// How the engine hands a sequence's model state to a store, without knowing the store:
// the state is a set of records, each an opaque byte string under a small typed key.
// services/ adapts storage::ContextStore to these interfaces.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tome::engine {

enum class StateRecordKind : uint8_t {
  kLightningState = 1,  // layer; index = tokens seen: [H, d, d] fp32 recurrent state
  kKvBlock = 2,         // layer, head, index = block: keys then values of its `rows` tokens
  kSummaryK1 = 3,       // layer, head, index = page: `rows` level-1 summaries
  kSummaryK2 = 4,       // layer, head, index = page: `rows` level-2 summaries
};

// Names one record. A record never changes once written: a block or page that grows is
// written again under a new `rows`, and a Lightning state under its token count, so the
// records of a shorter prefix of the sequence stay readable (document versions).
struct StateRecordKey {
  StateRecordKind kind;
  int32_t layer = 0;
  int32_t head = 0;
  int64_t index = 0;
  int64_t rows = 0;  // rows of a block/page; 0 for Lightning states
};

class StateSink {
 public:
  virtual ~StateSink() = default;
  virtual absl::Status Put(const StateRecordKey& key, absl::string_view bytes) = 0;
};

// How many records the engine asks a StateSource for in one GetMany. Small batches keep
// the batched lookup's gain (a 1M-token document's summary pages open ~5x faster than
// one Get each from RocksDB) without holding many records in host memory at once: on the
// measured machine, batches of 256-1024 32 KiB blocks were 4x slower than single reads
// from allocator churn (tests/bench/store_read_bench.cc, docs/PERFORMANCE.md).
inline constexpr size_t kStateReadBatch = 16;

// The engine reads several batches at once (EngineOptions::state_read_threads, the block
// cache's read threads): Get and GetMany must be safe to call from several threads.
class StateSource {
 public:
  virtual ~StateSource() = default;
  // NotFound if the record is absent.
  virtual absl::StatusOr<std::string> Get(const StateRecordKey& key) = 0;
  // Get of each key, in order. Stores that read many records in one call (RocksDB's
  // MultiGet) override this; the engine asks for a layer's blocks and pages together.
  virtual std::vector<absl::StatusOr<std::string>> GetMany(
      absl::Span<const StateRecordKey> keys) {
    std::vector<absl::StatusOr<std::string>> values;
    values.reserve(keys.size());
    for (const StateRecordKey& key : keys) values.push_back(Get(key));
    return values;
  }
  // Hands each key's record to `visit` (its index in `keys` and its bytes, valid only during
  // that call), once each in any order, and returns the first error of the source or of
  // `visit` (records not visited by then are not read). For readers that copy records into memory
  // of their own (the block cache's host tier, pinned staging): a store that can show its bytes in
  // place overrides it and spares the string each record costs in GetMany (an allocation
  // and a copy). The default visits GetMany's strings.
  using RecordVisitor = absl::FunctionRef<absl::Status(size_t, absl::string_view)>;
  virtual absl::Status ReadMany(absl::Span<const StateRecordKey> keys, RecordVisitor visit) {
    std::vector<absl::StatusOr<std::string>> values = GetMany(keys);
    if (values.size() != keys.size()) {
      return absl::InternalError("the state source answered a different number of records");
    }
    for (size_t i = 0; i < values.size(); ++i) {
      if (!values[i].ok()) return values[i].status();
      if (absl::Status s = visit(i, *values[i]); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
};

}  // namespace tome::engine
