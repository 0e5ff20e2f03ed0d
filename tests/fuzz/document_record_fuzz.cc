// The document and section records of the "meta" family (DecodeDocument, DecodeSection) on
// arbitrary bytes: errors, or records that survive a round trip.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "document_codec.h"  // storage/src
#include "tests/fuzz/fuzz_util.h"

namespace storage = tome::storage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view value(reinterpret_cast<const char*>(data), size);
  // The key's tenant and id: the record must name them; try the ones a fuzzed record names
  // most often (1/1) so that decoding gets past that check.
  auto record = storage::DecodeDocument(value, 1, 1);
  if (record.ok()) {
    auto encoded = storage::EncodeDocument(*record);
    FUZZ_CHECK(encoded.ok());
    auto again = storage::DecodeDocument(*encoded, 1, 1);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(*storage::EncodeDocument(*again) == *encoded);
  } else {
    const absl::StatusCode code = record.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kDataLoss ||
               code == absl::StatusCode::kFailedPrecondition);
  }

  std::string name;
  int64_t begin_byte = 0;
  if (storage::DecodeSection(value, &name, &begin_byte).ok()) {
    std::string name2;
    int64_t begin2 = 0;
    FUZZ_CHECK(storage::DecodeSection(storage::EncodeSection(name, begin_byte), &name2, &begin2)
                   .ok());
    FUZZ_CHECK(name2 == name && begin2 == begin_byte);
  }
  return 0;
}
