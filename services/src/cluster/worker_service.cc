#include "cluster/worker_service.h"

#include <glog/logging.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "auth/call_auth.h"
#include "document_service.h"
#include "status_util.h"
#include "tome/base/status_macros.h"

namespace tome::services::cluster {
namespace {

using internal::v1::EnsureDocumentResponse;

// Only routers (holding the peer token) may call; the principal is the one they forward.
absl::StatusOr<Principal> Peer(TomeCore* core, grpc::CallbackServerContext* context) {
  if (core->peer_token().empty()) {
    return absl::FailedPreconditionError("this tomed is not a cluster worker (--role=worker)");
  }
  return AuthenticateCall(*core, *context);
}

void FillMeta(TomeCore* core, const storage::DocumentRecord& record,
              const std::vector<storage::SectionInfo>& sections, internal::v1::DocumentMeta* meta) {
  meta->set_document_id(absl::StrCat(record.id));
  meta->set_tenant_id(record.tenant);
  meta->set_name(record.name);
  meta->set_public_(record.is_public);
  for (storage::TenantId t : record.shared_with) meta->add_shared_with(t);
  for (const storage::VersionInfo& v : record.versions) {
    auto* extent = meta->add_versions();
    extent->set_version(v.version);
    extent->set_text_bytes(v.text_bytes);
  }
  for (const storage::SectionInfo& s : sections) {
    auto* section = meta->add_sections();
    section->set_name(s.name);
    section->set_begin_byte(s.begin_byte);
  }
  meta->set_text_bytes(record.text_bytes);
  if (auto tenant = core->tenants().GetTenant(record.tenant); tenant.ok()) {
    meta->set_tenant_record(EncodeTenantRecord(*tenant));
  }
}

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(TomeCore* core) : core_(core), replicas_(&core->store()) {}

void WorkerServiceImpl::Drain() {
  std::unique_lock<std::mutex> lock(threads_mu_);
  threads_done_.wait(lock, [&] { return threads_ == 0; });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::CreateDocument(
    grpc::CallbackServerContext* context, const internal::v1::CreateDocumentRequest* request,
    v1::Document* response) {
  auto caller = Peer(core_, context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  if (caller->admin) {
    return FinishUnary(context, absl::PermissionDeniedError("the admin owns no documents"));
  }
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto view = core_->CreateDocument(*caller, request->name(), *id);
  if (view.ok()) {
    // A replica left from an earlier life of this id must not resurrect old text.
    replicas_.Delete(*id).IgnoreError();
    FillDocument(core_, *caller, *view, response);
  }
  return FinishUnary(context, view.status());
}

absl::Status WorkerServiceImpl::Restore(storage::DocumentId id) {
  TOME_ASSIGN_OR_RETURN(auto replica, replicas_.Read(id));
  const internal::v1::DocumentMeta& meta = replica.first;
  const std::string& text = replica.second;
  if (!core_->tenants().GetTenant(meta.tenant_id()).ok() && !meta.tenant_record().empty()) {
    TOME_ASSIGN_OR_RETURN(TenantInfo tenant, DecodeTenantRecord(meta.tenant_record()));
    TOME_RETURN_IF_ERROR(core_->tenants().UpsertTenant(tenant));
  }
  const Principal owner{meta.tenant_id(), false};
  TOME_RETURN_IF_ERROR(core_->CreateDocument(owner, meta.name(), id).status());
  if (meta.public_() || meta.shared_with_size() > 0) {
    std::vector<storage::TenantId> shared(meta.shared_with().begin(), meta.shared_with().end());
    TOME_RETURN_IF_ERROR(core_->ShareDocument(owner, id, shared, meta.public_()).status());
  }
  int64_t begin = 0;
  for (const auto& version : meta.versions()) {
    const int64_t end = version.text_bytes();
    if (end <= begin || end > static_cast<int64_t>(text.size())) continue;
    std::vector<SectionStart> sections;
    for (const auto& s : meta.sections()) {
      if (s.begin_byte() >= begin && s.begin_byte() < end) {
        sections.push_back({s.name(), s.begin_byte() - begin});
      }
    }
    TOME_RETURN_IF_ERROR(
        core_->AppendText(owner, id, text.substr(begin, end - begin), sections).status());
    begin = end;
  }
  LOG(INFO) << "took over document " << id << " from its replica (" << text.size() << " bytes, "
            << meta.versions_size() << " versions); prefilling";
  return replicas_.Delete(id);
}

absl::StatusOr<EnsureDocumentResponse::State> WorkerServiceImpl::Ensure(storage::DocumentId id) {
  std::lock_guard<std::mutex> lock(restore_mu_);
  if (core_->store().DocumentOwner(id).ok()) return EnsureDocumentResponse::HELD;
  auto replica = replicas_.State(id);
  TOME_RETURN_IF_ERROR(replica.status());
  if (!replica->present()) return EnsureDocumentResponse::ABSENT;
  if (absl::Status s = Restore(id); !s.ok()) {
    LOG(WARNING) << "taking over document " << id << " failed: " << s;
    // Undo a half-made document so that the next attempt starts clean.
    if (auto owner = core_->store().DocumentOwner(id); owner.ok()) {
      core_->store().DeleteDocument(*owner, id).IgnoreError();
    }
    if (absl::IsFailedPrecondition(s) || absl::IsNotFound(s)) {
      return EnsureDocumentResponse::ABSENT;  // an incomplete replica: as good as none
    }
    return s;
  }
  return EnsureDocumentResponse::RESTORED;
}

absl::Status WorkerServiceImpl::WaitReady(storage::DocumentId id,
                                          grpc::CallbackServerContext* context) {
  for (;;) {
    TOME_ASSIGN_OR_RETURN(storage::TenantId owner, core_->store().DocumentOwner(id));
    TOME_ASSIGN_OR_RETURN(storage::DocumentRecord record, core_->store().GetDocument(owner, id));
    if (record.status == storage::DocumentStatus::kReady ||
        record.status == storage::DocumentStatus::kFailed) {
      return absl::OkStatus();
    }
    if (context->IsCancelled()) return absl::CancelledError("the caller went away");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

grpc::ServerUnaryReactor* WorkerServiceImpl::EnsureDocument(
    grpc::CallbackServerContext* context, const internal::v1::EnsureDocumentRequest* request,
    internal::v1::EnsureDocumentResponse* response) {
  auto caller = Peer(core_, context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto* reactor = context->DefaultReactor();
  {
    std::lock_guard<std::mutex> lock(threads_mu_);
    ++threads_;
  }
  // A take-over appends and may wait for a prefill: off the gRPC callback threads.
  std::thread([this, context, reactor, response, id = *id, wait = request->wait_ready()] {
    auto state = Ensure(id);
    absl::Status status = state.status();
    if (state.ok()) {
      response->set_state(*state);
      if (wait && *state != EnsureDocumentResponse::ABSENT) status = WaitReady(id, context);
    }
    reactor->Finish(ToGrpcStatus(status));
    std::lock_guard<std::mutex> lock(threads_mu_);
    if (--threads_ == 0) threads_done_.notify_all();
  }).detach();
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ExportText(
    grpc::CallbackServerContext* context, const internal::v1::ExportTextRequest* request,
    internal::v1::ExportTextResponse* response) {
  auto caller = Peer(core_, context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  absl::Status status = [&]() -> absl::Status {
    storage::ContextStore& store = core_->store();
    TOME_ASSIGN_OR_RETURN(storage::TenantId owner, store.DocumentOwner(*id));
    TOME_ASSIGN_OR_RETURN(storage::DocumentRecord record, store.GetDocument(owner, *id));
    TOME_ASSIGN_OR_RETURN(auto sections, store.ListSections(owner, *id));
    FillMeta(core_, record, sections, response->mutable_meta());
    const int64_t offset = std::max<int64_t>(request->offset(), 0);
    const int64_t max_bytes = std::clamp<int64_t>(request->max_bytes(), 1, 2 << 20);
    if (offset < record.text_bytes) {
      TOME_ASSIGN_OR_RETURN(
          std::string text,
          store.ReadTextRange(owner, *id, offset, std::min(offset + max_bytes, record.text_bytes)));
      response->set_text(std::move(text));
    }
    return absl::OkStatus();
  }();
  return FinishUnary(context, status);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::GetReplica(
    grpc::CallbackServerContext* context, const internal::v1::GetReplicaRequest* request,
    internal::v1::ReplicaState* response) {
  auto caller = Peer(core_, context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto state = replicas_.State(*id);
  if (state.ok()) *response = *state;
  return FinishUnary(context, state.status());
}

grpc::ServerUnaryReactor* WorkerServiceImpl::PutReplica(
    grpc::CallbackServerContext* context, const internal::v1::PutReplicaRequest* request,
    internal::v1::ReplicaState* response) {
  auto caller = Peer(core_, context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  auto state = replicas_.Put(request->meta(), request->offset(), request->text());
  if (state.ok()) *response = *state;
  return FinishUnary(context, state.status());
}

grpc::ServerUnaryReactor* WorkerServiceImpl::DeleteReplica(
    grpc::CallbackServerContext* context, const internal::v1::DeleteReplicaRequest* request,
    internal::v1::ReplicaState* response) {
  auto caller = Peer(core_, context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  return FinishUnary(context, replicas_.Delete(*id));
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ListReplicas(
    grpc::CallbackServerContext* context, const internal::v1::ListReplicasRequest* request,
    internal::v1::ListReplicasResponse* response) {
  auto caller = Peer(core_, context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  storage::DocumentId after = 0;
  if (!request->after_id().empty()) {
    auto id = ParseDocumentId(request->after_id());
    if (!id.ok()) return FinishUnary(context, id.status());
    after = *id;
  }
  const int limit = request->limit() > 0 ? std::min(request->limit(), 1001) : 101;
  auto replicas = replicas_.List(caller->tenant, after, limit);
  if (replicas.ok()) {
    for (auto& meta : *replicas) *response->add_replicas() = std::move(meta);
  }
  return FinishUnary(context, replicas.status());
}

}  // namespace tome::services::cluster
