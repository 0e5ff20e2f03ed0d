#include "cluster/replica_store.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tome/base/status_macros.h"

namespace tome::services::cluster {
namespace {

using storage::RecordKind;

constexpr absl::string_view kMetaPrefix = "replica-meta/";

std::string MetaId(storage::DocumentId id) { return absl::StrCat(kMetaPrefix, id); }
std::string TextPrefix(storage::DocumentId id) { return absl::StrCat("replica-text/", id, "/"); }
std::string TextId(storage::DocumentId id, int64_t offset) {
  return absl::StrCat(TextPrefix(id), absl::StrFormat("%020d", offset));
}

int64_t FullBytes(const internal::v1::DocumentMeta& meta) {
  return meta.versions().empty() ? 0 : meta.versions().rbegin()->text_bytes();
}

}  // namespace

absl::StatusOr<internal::v1::DocumentMeta> ReplicaStore::Meta(storage::DocumentId id) {
  TOME_ASSIGN_OR_RETURN(std::string value, store_->GetRecord(RecordKind::kServer, MetaId(id)));
  internal::v1::DocumentMeta meta;
  if (!meta.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("the replica of document ", id, " is damaged"));
  }
  return meta;
}

absl::StatusOr<internal::v1::ReplicaState> ReplicaStore::State(storage::DocumentId id) {
  std::lock_guard<std::mutex> lock(mu_);
  internal::v1::ReplicaState state;
  auto meta = Meta(id);
  if (absl::IsNotFound(meta.status())) return state;
  TOME_RETURN_IF_ERROR(meta.status());
  state.set_present(true);
  state.set_text_bytes(meta->text_bytes());
  return state;
}

absl::Status ReplicaStore::DeleteLocked(storage::DocumentId id) {
  TOME_ASSIGN_OR_RETURN(auto chunks, store_->ListRecords(RecordKind::kServer, TextPrefix(id)));
  for (const auto& [chunk_id, value] : chunks) {
    TOME_RETURN_IF_ERROR(store_->DeleteRecord(RecordKind::kServer, chunk_id));
  }
  absl::Status s = store_->DeleteRecord(RecordKind::kServer, MetaId(id));
  return absl::IsNotFound(s) ? absl::OkStatus() : s;
}

absl::StatusOr<internal::v1::ReplicaState> ReplicaStore::Put(const internal::v1::DocumentMeta& meta,
                                                             int64_t offset,
                                                             const std::string& text) {
  uint64_t id = 0;
  if (!absl::SimpleAtoi(meta.document_id(), &id) || id == 0) {
    return absl::InvalidArgumentError("the replica names no document id");
  }
  const int64_t end = offset + static_cast<int64_t>(text.size());
  if (offset < 0 || end > FullBytes(meta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("replica bytes [", offset, ", ", end, ") pass the document's end"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (offset == 0) {
    TOME_RETURN_IF_ERROR(DeleteLocked(id));
  } else {
    TOME_ASSIGN_OR_RETURN(internal::v1::DocumentMeta held, Meta(id));
    if (held.text_bytes() != offset) {
      return absl::FailedPreconditionError(absl::StrCat("the replica of document ", id, " holds ",
                                                        held.text_bytes(), " bytes, not ", offset));
    }
  }
  if (!text.empty()) {
    TOME_RETURN_IF_ERROR(store_->PutRecord(RecordKind::kServer, TextId(id, offset), text));
  }
  internal::v1::DocumentMeta stored = meta;
  stored.set_text_bytes(end);
  TOME_RETURN_IF_ERROR(
      store_->PutRecord(RecordKind::kServer, MetaId(id), stored.SerializeAsString()));
  internal::v1::ReplicaState state;
  state.set_present(true);
  state.set_text_bytes(end);
  return state;
}

absl::StatusOr<std::pair<internal::v1::DocumentMeta, std::string>> ReplicaStore::Read(
    storage::DocumentId id) {
  std::lock_guard<std::mutex> lock(mu_);
  TOME_ASSIGN_OR_RETURN(internal::v1::DocumentMeta meta, Meta(id));
  if (meta.text_bytes() != FullBytes(meta)) {
    return absl::FailedPreconditionError(absl::StrCat("the replica of document ", id,
                                                      " is incomplete (", meta.text_bytes(), " of ",
                                                      FullBytes(meta), " bytes)"));
  }
  TOME_ASSIGN_OR_RETURN(auto chunks, store_->ListRecords(RecordKind::kServer, TextPrefix(id)));
  std::string text;
  for (const auto& [chunk_id, value] : chunks) text += value;  // ids sort by offset
  if (static_cast<int64_t>(text.size()) != meta.text_bytes()) {
    return absl::DataLossError(absl::StrCat("the replica text of document ", id, " is damaged"));
  }
  return std::make_pair(std::move(meta), std::move(text));
}

absl::StatusOr<std::vector<internal::v1::DocumentMeta>> ReplicaStore::List(
    storage::TenantId tenant, storage::DocumentId after, int limit) {
  TOME_ASSIGN_OR_RETURN(auto metas, store_->ListRecords(RecordKind::kServer, kMetaPrefix));
  std::vector<internal::v1::DocumentMeta> out;
  for (const auto& [meta_id, value] : metas) {
    internal::v1::DocumentMeta meta;
    uint64_t id = 0;
    if (!meta.ParseFromString(value) || !absl::SimpleAtoi(meta.document_id(), &id)) continue;
    if (id > after && (meta.tenant_id() == tenant || meta.public_() ||
                       std::find(meta.shared_with().begin(), meta.shared_with().end(), tenant) !=
                           meta.shared_with().end())) {
      meta.clear_sections();
      meta.clear_tenant_record();
      out.push_back(std::move(meta));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.document_id().size() != b.document_id().size()
               ? a.document_id().size() < b.document_id().size()
               : a.document_id() < b.document_id();
  });
  if (static_cast<int>(out.size()) > limit) out.resize(limit);
  return out;
}

absl::Status ReplicaStore::Delete(storage::DocumentId id) {
  std::lock_guard<std::mutex> lock(mu_);
  return DeleteLocked(id);
}

}  // namespace tome::services::cluster
