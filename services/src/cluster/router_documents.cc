#include <glog/logging.h>

#include <algorithm>
#include <map>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cluster/router_services.h"
#include "request_validation.h"
#include "status_util.h"
#include "tome/internal/v1/worker.grpc.pb.h"

namespace tome::services::cluster {
namespace {

auto DocStub(const Target& t) { return v1::DocumentService::NewStub(t.channel); }

}  // namespace

grpc::Status RouterDocumentService::CreateDocument(grpc::ServerContext* context,
                                                   const v1::CreateDocumentRequest* request,
                                                   v1::Document* response) {
  auto caller = router_->Authenticate(*context, /*admin=*/false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  grpc::Status status;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const storage::DocumentId id = router_->NewDocumentId();
    auto owner = router_->PlaceNew(id);
    if (!owner.ok()) return ToGrpcStatus(owner.status());
    internal::v1::CreateDocumentRequest create;
    create.set_document_id(absl::StrCat(id));
    create.set_name(request->name());
    status = internal::v1::WorkerService::NewStub(owner->channel)
                 ->CreateDocument(router_->Forward(*context, *caller).get(), create, response);
    // A taken id, or an owner that died before its lease expired: another id, another owner.
    if (status.error_code() == grpc::StatusCode::ALREADY_EXISTS ||
        status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      continue;
    }
    if (status.ok()) router_->SyncReplica(id, *owner, *caller);
    return status;
  }
  return status;
}

grpc::Status RouterDocumentService::AppendText(grpc::ServerContext* context,
                                               grpc::ServerReader<v1::AppendTextRequest>* reader,
                                               v1::AppendTextResponse* response) {
  auto caller = router_->Authenticate(*context, /*admin=*/false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  v1::AppendTextRequest first;
  if (!reader->Read(&first)) {
    return ToGrpcStatus(absl::InvalidArgumentError("AppendText received no message"));
  }
  if (first.document_id().empty()) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("the first AppendText message must set document_id"));
  }
  auto id = ParseDocumentId(first.document_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  // No retry once text has streamed on, and no cached placement: EnsureDocument checks the
  // owner first, so that the stream is not lost to a worker that died.
  std::optional<Target> used;
  grpc::Status status = router_->OnDocument(
      *id, *context, *caller, /*wait_ready=*/false, /*use_cache=*/false,
      [&](const Target& target, grpc::ClientContext* client) {
        used = target;
        auto writer = DocStub(target)->AppendText(client, response);
        bool ok = writer->Write(first);
        v1::AppendTextRequest next;
        while (ok && reader->Read(&next)) ok = writer->Write(next);
        writer->WritesDone();
        return writer->Finish();
      },
      [] { return false; });
  if (status.ok() && used) router_->SyncReplica(*id, *used, *caller);
  return status;
}

grpc::Status RouterDocumentService::GetDocument(grpc::ServerContext* context,
                                                const v1::GetDocumentRequest* request,
                                                v1::Document* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return router_->OnDocument(*id, *context, *caller, false, true,
                             [&](const Target& t, grpc::ClientContext* client) {
                               return DocStub(t)->GetDocument(client, *request, response);
                             });
}

grpc::Status RouterDocumentService::ListDocuments(grpc::ServerContext* context,
                                                  const v1::ListDocumentsRequest* request,
                                                  v1::ListDocumentsResponse* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (request->page_size() < 0 || request->page_size() > 1000) {
    return ToGrpcStatus(absl::InvalidArgumentError("page_size must be in [0, 1000]"));
  }
  const int limit = request->page_size() > 0 ? request->page_size() : 100;
  // Every worker lists its documents after the token; the page is the smallest ids of all.
  // Documents known only as replicas (their owner left, nobody took them over yet) are
  // taken over now, so that a listing never loses a document a worker could serve. A worker
  // that cannot be reached is skipped: its documents show up through their replicas.
  std::map<uint64_t, std::optional<v1::Document>> merged;  // nullopt: a replica only
  bool more = false;
  const std::vector<Target> live = router_->LiveWorkers();
  if (live.empty()) {
    return ToGrpcStatus(absl::UnavailableError(
        "no live workers are registered in etcd; start workers (tomed --role=worker) and retry"));
  }
  int answered = 0;
  for (const Target& t : live) {
    v1::ListDocumentsResponse part;
    grpc::Status s =
        DocStub(t)->ListDocuments(router_->Forward(*context, *caller).get(), *request, &part);
    if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) return s;
    if (!s.ok()) {
      LOG(WARNING) << "listing documents on worker " << t.worker_id << ": " << s.error_message();
      continue;
    }
    ++answered;
    more |= !part.next_page_token().empty();
    for (v1::Document& d : *part.mutable_documents()) {
      uint64_t id = 0;
      if (absl::SimpleAtoi(d.id(), &id)) merged[id] = std::move(d);
    }
    internal::v1::ListReplicasRequest list;
    list.set_after_id(request->page_token());
    list.set_limit(limit + 1);
    internal::v1::ListReplicasResponse replicas;
    s = internal::v1::WorkerService::NewStub(t.channel)->ListReplicas(
        router_->Forward(*context, *caller).get(), list, &replicas);
    if (!s.ok()) continue;
    for (const internal::v1::DocumentMeta& meta : replicas.replicas()) {
      uint64_t id = 0;
      if (!absl::SimpleAtoi(meta.document_id(), &id)) continue;
      if (!request->include_shared() && meta.tenant_id() != caller->principal.tenant) continue;
      merged.emplace(id, std::nullopt);  // keeps a held copy
    }
  }
  if (answered == 0) {
    return ToGrpcStatus(absl::UnavailableError("no worker could list documents; retry shortly"));
  }
  int listed = 0;
  for (auto& [id, document] : merged) {
    if (listed == limit) {
      more = true;
      break;
    }
    if (!document) {
      v1::GetDocumentRequest get;
      get.set_document_id(absl::StrCat(id));
      v1::Document taken_over;
      grpc::Status s = router_->OnDocument(
          id, *context, *caller, false, true, [&](const Target& t, grpc::ClientContext* client) {
            return DocStub(t)->GetDocument(client, get, &taken_over);
          });
      if (!s.ok()) continue;  // deleted meanwhile, or no longer readable
      document = std::move(taken_over);
    }
    *response->add_documents() = std::move(*document);
    ++listed;
  }
  if (more && response->documents_size() > 0) {
    response->set_next_page_token(response->documents(response->documents_size() - 1).id());
  }
  return grpc::Status::OK;
}

grpc::Status RouterDocumentService::DeleteDocument(grpc::ServerContext* context,
                                                   const v1::DeleteDocumentRequest* request,
                                                   v1::DeleteDocumentResponse* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  grpc::Status status = router_->OnDocument(
      *id, *context, *caller, false, true, [&](const Target& t, grpc::ClientContext* client) {
        return DocStub(t)->DeleteDocument(client, *request, response);
      });
  if (status.ok()) router_->DropDocument(*id, *caller);
  return status;
}

grpc::Status RouterDocumentService::ShareDocument(grpc::ServerContext* context,
                                                  const v1::ShareDocumentRequest* request,
                                                  v1::Document* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  for (const std::string& tenant : request->tenant_ids()) {
    auto parsed = ParseTenantId(tenant);
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    if (!router_->tenants().GetTenant(*parsed).ok()) {
      return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat("there is no tenant ", tenant)));
    }
  }
  std::optional<Target> used;
  grpc::Status status = router_->OnDocument(
      *id, *context, *caller, false, true, [&](const Target& t, grpc::ClientContext* client) {
        used = t;
        return DocStub(t)->ShareDocument(client, *request, response);
      });
  if (status.ok() && used) router_->SyncReplica(*id, *used, *caller);
  return status;
}

grpc::Status RouterDocumentService::WatchIngestion(
    grpc::ServerContext* context, const v1::WatchIngestionRequest* request,
    grpc::ServerWriter<v1::IngestionProgress>* writer) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  bool relayed = false;
  return router_->OnDocument(
      *id, *context, *caller, false, true,
      [&](const Target& t, grpc::ClientContext* client) {
        auto reader = DocStub(t)->WatchIngestion(client, *request);
        v1::IngestionProgress progress;
        while (reader->Read(&progress)) {
          relayed = true;
          if (!writer->Write(progress)) client->TryCancel();
        }
        return reader->Finish();
      },
      [&] { return !relayed; });
}

grpc::Status RouterDocumentService::ReingestDocument(grpc::ServerContext* context,
                                                     const v1::ReingestDocumentRequest* request,
                                                     v1::Document* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return router_->OnDocument(*id, *context, *caller, false, true,
                             [&](const Target& t, grpc::ClientContext* client) {
                               return DocStub(t)->ReingestDocument(client, *request, response);
                             });
}

}  // namespace tome::services::cluster
