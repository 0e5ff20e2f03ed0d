#include "keys.h"

#include "absl/strings/str_cat.h"

namespace tome::storage {

void AppendBigEndian64(uint64_t value, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

void AppendBigEndian32(uint32_t value, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian64(const char* p) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

uint32_t ReadBigEndian32(const char* p) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

std::string TenantPrefix(TenantId tenant) {
  std::string key;
  key.reserve(kTenantPrefixSize);
  AppendBigEndian64(tenant, &key);
  return key;
}

std::string DocumentPrefix(TenantId tenant, DocumentId id) {
  std::string key;
  key.reserve(kStateKeySize);  // callers often append a suffix
  AppendBigEndian64(tenant, &key);
  AppendBigEndian64(id, &key);
  return key;
}

std::string DocumentPrefixEnd(TenantId tenant, DocumentId id) {
  std::string key = DocumentPrefix(tenant, id);
  // Add one with carry from the last byte.
  for (int i = static_cast<int>(key.size()) - 1; i >= 0; --i) {
    auto byte = static_cast<uint8_t>(key[i]);
    if (byte != 0xff) {
      key[i] = static_cast<char>(byte + 1);
      return key;
    }
    key[i] = 0;
  }
  return std::string();
}

bool ParseDocumentPrefix(absl::string_view key, TenantId* tenant, DocumentId* id) {
  if (key.size() < kDocumentPrefixSize) return false;
  *tenant = ReadBigEndian64(key.data());
  *id = ReadBigEndian64(key.data() + 8);
  return true;
}

std::string ChunkKey(TenantId tenant, DocumentId id, int64_t offset) {
  std::string key = DocumentPrefix(tenant, id);
  AppendBigEndian64(static_cast<uint64_t>(offset), &key);
  return key;
}

int64_t ChunkOffset(absl::string_view key) {
  if (key.size() != kChunkKeySize) return -1;
  return static_cast<int64_t>(ReadBigEndian64(key.data() + kDocumentPrefixSize));
}

absl::Status ValidateStateKey(const StateKey& key) {
  if (key.layer < 0 || key.head < 0 || key.index < 0 || key.rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("state key fields must not be negative: ", StateKeyDebugString(key)));
  }
  return absl::OkStatus();
}

std::string EncodeStateKey(TenantId tenant, DocumentId id, const StateKey& key) {
  std::string out = DocumentPrefix(tenant, id);
  out.push_back(static_cast<char>(key.kind));
  AppendBigEndian32(static_cast<uint32_t>(key.layer), &out);
  AppendBigEndian32(static_cast<uint32_t>(key.head), &out);
  AppendBigEndian64(static_cast<uint64_t>(key.index), &out);
  AppendBigEndian64(static_cast<uint64_t>(key.rows), &out);
  return out;
}

bool DecodeStateKey(absl::string_view key, StateKey* out) {
  if (key.size() != kStateKeySize) return false;
  const char* p = key.data() + kDocumentPrefixSize;
  out->kind = static_cast<uint8_t>(p[0]);
  out->layer = static_cast<int32_t>(ReadBigEndian32(p + 1));
  out->head = static_cast<int32_t>(ReadBigEndian32(p + 5));
  out->index = static_cast<int64_t>(ReadBigEndian64(p + 9));
  out->rows = static_cast<int64_t>(ReadBigEndian64(p + 17));
  return true;
}

std::string StateKeyDebugString(const StateKey& key) {
  return absl::StrCat("kind=", static_cast<int>(key.kind), " layer=", key.layer, " head=", key.head,
                      " index=", key.index, " rows=", key.rows);
}

std::string SectionKey(TenantId tenant, DocumentId id, int64_t begin_token) {
  std::string key = DocumentPrefix(tenant, id);
  key.push_back('\x01');
  AppendBigEndian64(static_cast<uint64_t>(begin_token), &key);
  return key;
}

std::string StateKeyRowsZero(TenantId tenant, DocumentId id, const StateKey& key) {
  StateKey zero = key;
  zero.rows = 0;
  return EncodeStateKey(tenant, id, zero);
}

std::string DocumentOwnerKey(DocumentId id) {
  std::string key(1, kOwnerKeyTag);
  AppendBigEndian64(id, &key);
  return key;
}

std::string ServiceRecordKey(RecordKind kind, absl::string_view id) {
  std::string key(1, kServiceRecordTag);
  key.push_back(static_cast<char>(kind));
  key.append(id.data(), id.size());
  return key;
}

}  // namespace tome::storage
