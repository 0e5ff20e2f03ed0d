// How the engine hands a sequence's model state to a store, without knowing the store:
// the state is a set of records, each an opaque byte string under a small typed key.
// services/ adapts storage::ContextStore to these interfaces.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

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

class StateSource {
 public:
  virtual ~StateSource() = default;
  // NotFound if the record is absent.
  virtual absl::StatusOr<std::string> Get(const StateRecordKey& key) = 0;
};

}  // namespace tome::engine
