// The state envelope (DecodeStateValue) and the state key decoder on arbitrary bytes: errors
// or values that re-encode to exactly the input.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "keys.h"         // storage/src
#include "value_codec.h"  // storage/src
#include "tests/fuzz/fuzz_util.h"

namespace storage = tome::storage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view value(reinterpret_cast<const char*>(data), size);
  static const storage::Fingerprint kFingerprint = storage::HashFingerprint("fuzz-model");

  auto payload = storage::DecodeStateValue(value, kFingerprint);
  if (payload.ok()) {
    FUZZ_CHECK(storage::EncodeStateValue(kFingerprint, *payload) == value);
  } else {
    FUZZ_CHECK(payload.status().code() == absl::StatusCode::kDataLoss ||
               payload.status().code() == absl::StatusCode::kFailedPrecondition);
  }

  storage::StateKey key;
  if (storage::DecodeStateKey(value, &key)) {
    storage::TenantId tenant = 0;
    storage::DocumentId id = 0;
    FUZZ_CHECK(storage::ParseDocumentPrefix(value, &tenant, &id));
    if (storage::ValidateStateKey(key).ok()) {
      FUZZ_CHECK(storage::EncodeStateKey(tenant, id, key) == value);
    }
    (void)storage::StateKeyDebugString(key);
  }
  const int64_t offset = storage::ChunkOffset(value);
  FUZZ_CHECK(offset == -1 || size == storage::kChunkKeySize);
  return 0;
}
