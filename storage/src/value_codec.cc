#include "value_codec.h"

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "xxhash.h"

namespace tome::storage {
namespace {

constexpr size_t kChecksumOffset = 1 + kFingerprintSize;

uint64_t Checksum(absl::string_view header, absl::string_view payload) {
  const XXH64_hash_t seed = XXH3_64bits(header.data(), header.size());
  return XXH3_64bits_withSeed(payload.data(), payload.size(), seed);
}

void PutLittleEndian64(uint64_t value, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

uint64_t GetLittleEndian64(const char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

constexpr absl::string_view kReingest =
    "the stored state is corrupt; re-ingest the document (DocumentService.ReingestDocument) or "
    "delete it";

}  // namespace

Fingerprint HashFingerprint(absl::string_view model_fingerprint) {
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical,
                           XXH3_128bits(model_fingerprint.data(), model_fingerprint.size()));
  Fingerprint out;
  static_assert(sizeof(canonical.digest) == kFingerprintSize);
  std::memcpy(out.data(), canonical.digest, kFingerprintSize);
  return out;
}

std::string FingerprintHex(const Fingerprint& fingerprint) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(fingerprint.data()), fingerprint.size()));
}

std::string EncodeStateValue(const Fingerprint& fingerprint, absl::string_view payload) {
  std::string value(kStateValueHeaderSize + payload.size(), '\0');
  value[0] = static_cast<char>(kStateValueFormat);
  std::memcpy(value.data() + 1, fingerprint.data(), kFingerprintSize);
  PutLittleEndian64(Checksum(absl::string_view(value.data(), kChecksumOffset), payload),
                    value.data() + kChecksumOffset);
  if (!payload.empty()) {
    std::memcpy(value.data() + kStateValueHeaderSize, payload.data(), payload.size());
  }
  return value;
}

absl::StatusOr<absl::string_view> DecodeStateValue(absl::string_view value,
                                                   const Fingerprint& expected) {
  if (value.size() < kStateValueHeaderSize) {
    return absl::DataLossError(
        absl::StrCat("value of ", value.size(), " bytes is shorter than its header; ", kReingest));
  }
  const auto format = static_cast<uint8_t>(value[0]);
  if (format != kStateValueFormat) {
    return absl::DataLossError(absl::StrCat("unknown state value format ", static_cast<int>(format),
                                            " (expected ", static_cast<int>(kStateValueFormat),
                                            "); ", kReingest));
  }
  const absl::string_view payload = value.substr(kStateValueHeaderSize);
  const uint64_t stored = GetLittleEndian64(value.data() + kChecksumOffset);
  if (Checksum(value.substr(0, kChecksumOffset), payload) != stored) {
    return absl::DataLossError(absl::StrCat("checksum mismatch; ", kReingest));
  }
  if (std::memcmp(value.data() + 1, expected.data(), kFingerprintSize) != 0) {
    Fingerprint found;
    std::memcpy(found.data(), value.data() + 1, kFingerprintSize);
    return absl::FailedPreconditionError(
        absl::StrCat("the state was computed by a different model (fingerprint ",
                     FingerprintHex(found), ", this store's model is ", FingerprintHex(expected),
                     "); it must be recomputed: re-ingest the document (ReingestDocument)"));
  }
  return payload;
}

}  // namespace tome::storage
