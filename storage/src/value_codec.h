// The envelope of every state value (Lightning states, KV blocks, summary pages):
//
//   [0]      format version (kStateValueFormat)
//   [1,17)   model fingerprint: XXH3-128 of StoreOptions::model_fingerprint, canonical bytes
//   [17,25)  checksum, little-endian: XXH3-64 of the payload seeded with XXH3-64 of [0,17)
//   [25,..)  payload (the engine's bytes)
//
// The checksum covers the header too, so a flipped fingerprint byte reads as corruption
// rather than as another model.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tome::storage {

inline constexpr uint8_t kStateValueFormat = 1;
inline constexpr size_t kFingerprintSize = 16;
inline constexpr size_t kStateValueHeaderSize = 1 + kFingerprintSize + 8;

using Fingerprint = std::array<uint8_t, kFingerprintSize>;

// Hashes a model fingerprint string of any length to the 16 bytes stored in values.
Fingerprint HashFingerprint(absl::string_view model_fingerprint);
std::string FingerprintHex(const Fingerprint& fingerprint);

// Header + `payload`.
std::string EncodeStateValue(const Fingerprint& fingerprint, absl::string_view payload);

// The payload of `value` (a view into it). DataLoss for a short value, an unknown format or a
// checksum mismatch; FailedPrecondition if it was written under another fingerprint. The
// messages say what is wrong, not where: callers prefix the document and key.
absl::StatusOr<absl::string_view> DecodeStateValue(absl::string_view value,
                                                   const Fingerprint& expected);

}  // namespace tome::storage
