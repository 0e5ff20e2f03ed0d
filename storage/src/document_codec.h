// The "meta" value of a document: its DocumentRecord as JSON with a format version, e.g.
//   {"format":1,"tenant":1,"id":7,"name":"book.txt","created_micros":...,"updated_micros":...,
//    "version":2,"text_bytes":5120,"num_tokens":1300,"state_tokens":1024,
//    "status":"ingesting","error":"","checkpoints":[512,1024],
//    "versions":[[1,1000,4096,<created_micros>],[2,1300,5120,<created_micros>]]}
// versions are [version, num_tokens, text_bytes, created_micros].
// Readable with `ldb` when debugging; records are small and rarely written.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tome/storage/context_store.h"

namespace tome::storage {

inline constexpr int kDocumentFormat = 1;

// InvalidArgument if the name is not valid UTF-8 (JSON strings must be); an invalid error text
// is stored with its bad bytes replaced by U+FFFD instead, as it only informs.
absl::StatusOr<std::string> EncodeDocument(const DocumentRecord& record);

// DataLoss if `value` is not a record, or one whose tenant or id differs from the key's;
// FailedPrecondition for a format newer than kDocumentFormat.
absl::StatusOr<DocumentRecord> DecodeDocument(absl::string_view value, TenantId tenant,
                                              DocumentId id);

// The "meta" value of a section: {"format":1,"name":...,"begin_byte":...}.
std::string EncodeSection(absl::string_view name, int64_t begin_byte);
// DataLoss if `value` is not a section value.
absl::Status DecodeSection(absl::string_view value, std::string* name, int64_t* begin_byte);

bool IsValidUtf8(absl::string_view text);
// `text` with every byte that does not start a valid UTF-8 sequence replaced by U+FFFD.
std::string SanitizeUtf8(absl::string_view text);

}  // namespace tome::storage
