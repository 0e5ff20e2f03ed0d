// The key layout of every column family (docs/STORAGE.md has the picture).
//
// Integers are fixed-width big-endian so that byte order is numeric order, and every key of a
// document starts with the same 16 bytes, tenant(8) document(8): a document is one contiguous
// range [DocumentPrefix, DocumentPrefixEnd) in every column family.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tome/storage/context_store.h"

namespace tome::storage {

inline constexpr size_t kTenantPrefixSize = 8;
inline constexpr size_t kDocumentPrefixSize = 16;
inline constexpr size_t kChunkKeySize = kDocumentPrefixSize + 8;
// prefix + kind(1) layer(4) head(4) index(8) rows(8)
inline constexpr size_t kStateKeySize = kDocumentPrefixSize + 1 + 4 + 4 + 8 + 8;

// "meta": the document id counter lives under this one-byte key. A key shorter than 16 bytes
// made of zero bytes sorts before every 16-byte key, so no document range contains it.
inline constexpr absl::string_view kNextDocumentIdKey("\0", 1);

void AppendBigEndian64(uint64_t value, std::string* out);
void AppendBigEndian32(uint32_t value, std::string* out);
// Reads 8 (4) big-endian bytes at `p`.
uint64_t ReadBigEndian64(const char* p);
uint32_t ReadBigEndian32(const char* p);

// tenant(8): every key of the tenant's documents starts with it.
std::string TenantPrefix(TenantId tenant);
// tenant(8) doc(8): the "meta" key of the document record, and the prefix of all its keys.
std::string DocumentPrefix(TenantId tenant, DocumentId id);
// The prefix plus one, as a 128-bit integer: the first key after the document's range.
// Empty for the all-0xff prefix, which has no such key (no document has that id: ids start at
// 1 and grow one by one).
std::string DocumentPrefixEnd(TenantId tenant, DocumentId id);
// Splits a key starting with a document prefix. False if it is shorter.
bool ParseDocumentPrefix(absl::string_view key, TenantId* tenant, DocumentId* id);

// "text" and "tokens": prefix + starting offset(8) (bytes for text, token index for tokens).
std::string ChunkKey(TenantId tenant, DocumentId id, int64_t offset);
// The offset of a chunk key; -1 if `key` is not kChunkKeySize bytes long.
int64_t ChunkOffset(absl::string_view key);

// "meta": a section of a document: prefix + 0x01 + begin token(8). Longer than a record key
// and inside the document's range.
std::string SectionKey(TenantId tenant, DocumentId id, int64_t begin_token);
inline constexpr size_t kSectionKeySize = kDocumentPrefixSize + 1 + 8;

// "meta": the owner index of a document: 0xfe | document id(8) -> tenant(8). And service
// records: 0xff | kind(1) | id. Both sort after every document key (tenant ids stay below
// 2^56, so document keys start with 0x00) and lie in no document's range.
std::string DocumentOwnerKey(DocumentId id);
std::string ServiceRecordKey(RecordKind kind, absl::string_view id);
inline constexpr char kOwnerKeyTag = '\xfe';
inline constexpr char kServiceRecordTag = '\xff';

// "state", "kv", "summary": prefix + kind(1) layer(4) head(4) index(8) rows(8).
// InvalidArgument for a negative layer, head, index or rows.
absl::Status ValidateStateKey(const StateKey& key);
std::string EncodeStateKey(TenantId tenant, DocumentId id, const StateKey& key);
// False unless `key` is kStateKeySize bytes long.
bool DecodeStateKey(absl::string_view key, StateKey* out);
// The key of the same block/page with `rows` = 0: the lowest key of its records.
std::string StateKeyRowsZero(TenantId tenant, DocumentId id, const StateKey& key);
// Bytes of a state key that name the block or page (everything but the rows).
inline constexpr size_t kStateKeyBlockPrefixSize = kStateKeySize - 8;

// "kind=2 layer=3 head=1 index=7 rows=64", for error messages.
std::string StateKeyDebugString(const StateKey& key);

}  // namespace tome::storage
