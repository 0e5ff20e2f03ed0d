#include "document_service.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "auth/call_auth.h"
#include "status_util.h"
#include "tome/base/status_macros.h"
#include "write_reactor.h"

namespace tome::services {

v1::DocumentStatus ToProto(storage::DocumentStatus status) {
  switch (status) {
    case storage::DocumentStatus::kEmpty: return v1::DOCUMENT_STATUS_EMPTY;
    case storage::DocumentStatus::kIngesting: return v1::DOCUMENT_STATUS_INGESTING;
    case storage::DocumentStatus::kReady: return v1::DOCUMENT_STATUS_READY;
    case storage::DocumentStatus::kFailed: return v1::DOCUMENT_STATUS_FAILED;
  }
  return v1::DOCUMENT_STATUS_UNSPECIFIED;
}

void SetTimestamp(int64_t micros, google::protobuf::Timestamp* out) {
  out->set_seconds(micros / 1000000);
  out->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
}

void FillDocument(TomeCore* core, const Principal& caller, const DocumentView& view,
                  v1::Document* out) {
  const storage::DocumentRecord& r = view.record;
  out->set_id(absl::StrCat(r.id));
  out->set_name(r.name);
  out->set_status(ToProto(r.status));
  out->set_version(r.version);
  out->set_text_bytes(r.text_bytes);
  out->set_num_tokens(r.num_tokens);
  out->set_ingested_tokens(r.state_tokens);
  SetTimestamp(r.created_micros, out->mutable_create_time());
  SetTimestamp(r.updated_micros, out->mutable_update_time());
  out->set_error(r.error);
  for (const storage::VersionInfo& v : r.versions) {
    v1::DocumentVersion* version = out->add_versions();
    version->set_version(v.version);
    version->set_num_tokens(v.num_tokens);
    version->set_text_bytes(v.text_bytes);
    SetTimestamp(v.created_micros, version->mutable_create_time());
  }
  out->set_owned(view.owned);
  if (view.owned) {  // sharing and storage details are the owner's business
    out->set_public_(r.is_public);
    for (storage::TenantId t : r.shared_with) out->add_shared_with_tenant_ids(absl::StrCat(t));
    auto bytes = core->StoredBytes(r);
    out->set_stored_bytes(bytes.ok() ? *bytes : 0);
  }
  auto sections = core->ListSections(caller, r.id);
  out->set_num_sections(sections.ok() ? static_cast<int64_t>(sections->size()) : 0);
}

namespace {

// The caller of a document call with a concurrent-call slot held for its duration.
struct Call {
  Principal caller;
  std::unique_ptr<UsageTracker::CallSlot> slot;
};

absl::StatusOr<Call> Begin(TomeCore* core, grpc::CallbackServerContext* context) {
  Call call;
  TOME_ASSIGN_OR_RETURN(call.caller, AuthenticateTenant(*core, *context));
  TOME_ASSIGN_OR_RETURN(call.slot, core->Admit(call.caller));
  return call;
}

// Collects the streamed pieces of one AppendText call, then appends them at once.
class AppendReactor final : public grpc::ServerReadReactor<v1::AppendTextRequest> {
 public:
  AppendReactor(TomeCore* core, Call call, v1::AppendTextResponse* response)
      : core_(core), call_(std::move(call)), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // end of the client's stream
      Complete();
      return;
    }
    if (!request_.document_id().empty()) {
      if (!document_id_.empty() && request_.document_id() != document_id_) {
        Done(ToGrpcStatus(absl::InvalidArgumentError(
            "every message of one AppendText stream must name the same document_id")));
        return;
      }
      document_id_ = request_.document_id();
    } else if (document_id_.empty()) {
      Done(ToGrpcStatus(
          absl::InvalidArgumentError("the first AppendText message must set document_id")));
      return;
    }
    if (static_cast<int64_t>(text_.size() + request_.text().size()) >
        core_->max_document_bytes()) {
      Done(ToGrpcStatus(absl::ResourceExhaustedError(absl::StrCat(
          "the streamed text exceeds this server's limit of ", core_->max_document_bytes(),
          " bytes per AppendText call; append it in several calls"))));
      return;
    }
    if (!request_.section().empty()) {
      sections_.push_back({request_.section(), static_cast<int64_t>(text_.size())});
    }
    text_ += request_.text();
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  // Frees the call's concurrency slot before the client can see the status, so that a
  // client whose call has ended may start the next one at once.
  void Done(grpc::Status status) {
    call_.slot.reset();
    Finish(std::move(status));
  }

  void Complete() {
    if (document_id_.empty()) {
      Done(ToGrpcStatus(absl::InvalidArgumentError("AppendText received no message")));
      return;
    }
    auto id = ParseDocumentId(document_id_);
    if (!id.ok()) {
      Done(ToGrpcStatus(id.status()));
      return;
    }
    auto result = core_->AppendText(call_.caller, *id, text_, sections_);
    if (!result.ok()) {
      Done(ToGrpcStatus(result.status()));
      return;
    }
    FillDocument(core_, call_.caller, DocumentView{result->record, true},
                 response_->mutable_document());
    response_->set_appended_bytes(result->appended_bytes);
    response_->set_appended_tokens(result->appended_tokens);
    Done(grpc::Status::OK);
  }

  TomeCore* core_;
  Call call_;
  v1::AppendTextResponse* response_;
  v1::AppendTextRequest request_;
  std::string document_id_;
  std::string text_;
  std::vector<SectionStart> sections_;
};

// A reactor that only reports an error (for streaming calls refused up front).
class RefusedReader final : public grpc::ServerReadReactor<v1::AppendTextRequest> {
 public:
  explicit RefusedReader(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* DocumentServiceImpl::CreateDocument(
    grpc::CallbackServerContext* context, const v1::CreateDocumentRequest* request,
    v1::Document* response) {
  auto call = Begin(core_, context);
  if (!call.ok()) return FinishUnary(context, call.status());
  auto view = core_->CreateDocument(call->caller, request->name());
  if (view.ok()) FillDocument(core_, call->caller, *view, response);
  return FinishUnary(context, view.status());
}

grpc::ServerReadReactor<v1::AppendTextRequest>* DocumentServiceImpl::AppendText(
    grpc::CallbackServerContext* context, v1::AppendTextResponse* response) {
  auto call = Begin(core_, context);
  if (!call.ok()) return new RefusedReader(call.status());
  return new AppendReactor(core_, std::move(call).value(), response);
}

grpc::ServerUnaryReactor* DocumentServiceImpl::GetDocument(grpc::CallbackServerContext* context,
                                                           const v1::GetDocumentRequest* request,
                                                           v1::Document* response) {
  auto call = Begin(core_, context);
  if (!call.ok()) return FinishUnary(context, call.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto view = core_->GetDocument(call->caller, *id);
  if (view.ok()) FillDocument(core_, call->caller, *view, response);
  return FinishUnary(context, view.status());
}

grpc::ServerUnaryReactor* DocumentServiceImpl::ListDocuments(
    grpc::CallbackServerContext* context, const v1::ListDocumentsRequest* request,
    v1::ListDocumentsResponse* response) {
  auto call = Begin(core_, context);
  if (!call.ok()) return FinishUnary(context, call.status());
  if (request->page_size() < 0 || request->page_size() > 1000) {
    return FinishUnary(context, absl::InvalidArgumentError("page_size must be in [0, 1000]"));
  }
  storage::DocumentId after = 0;
  if (!request->page_token().empty()) {
    auto parsed = ParseDocumentId(request->page_token());
    if (!parsed.ok()) {
      return FinishUnary(context, absl::InvalidArgumentError(
                                 "page_token must be a next_page_token from ListDocuments"));
    }
    after = *parsed;
  }
  const int limit = request->page_size() > 0 ? request->page_size() : 100;
  auto views = core_->ListDocuments(call->caller, after, limit + 1, request->include_shared());
  if (!views.ok()) return FinishUnary(context, views.status());
  for (int i = 0; i < static_cast<int>(views->size()) && i < limit; ++i) {
    FillDocument(core_, call->caller, (*views)[i], response->add_documents());
  }
  if (static_cast<int>(views->size()) > limit) {
    response->set_next_page_token(absl::StrCat((*views)[limit - 1].record.id));
  }
  return FinishUnary(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* DocumentServiceImpl::DeleteDocument(
    grpc::CallbackServerContext* context, const v1::DeleteDocumentRequest* request,
    v1::DeleteDocumentResponse* response) {
  auto call = Begin(core_, context);
  if (!call.ok()) return FinishUnary(context, call.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  return FinishUnary(context, core_->DeleteDocument(call->caller, *id));
}

grpc::ServerUnaryReactor* DocumentServiceImpl::ShareDocument(
    grpc::CallbackServerContext* context, const v1::ShareDocumentRequest* request,
    v1::Document* response) {
  auto call = Begin(core_, context);
  if (!call.ok()) return FinishUnary(context, call.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  std::vector<storage::TenantId> tenants;
  for (const std::string& t : request->tenant_ids()) {
    auto parsed = ParseTenantId(t);
    if (!parsed.ok()) return FinishUnary(context, parsed.status());
    tenants.push_back(*parsed);
  }
  auto view = core_->ShareDocument(call->caller, *id, tenants, request->public_());
  if (view.ok()) FillDocument(core_, call->caller, *view, response);
  return FinishUnary(context, view.status());
}

grpc::ServerUnaryReactor* DocumentServiceImpl::ReingestDocument(
    grpc::CallbackServerContext* context, const v1::ReingestDocumentRequest* request,
    v1::Document* response) {
  auto call = Begin(core_, context);
  if (!call.ok()) return FinishUnary(context, call.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto view = core_->ReingestDocument(call->caller, *id);
  if (view.ok()) FillDocument(core_, call->caller, *view, response);
  return FinishUnary(context, view.status());
}

grpc::ServerWriteReactor<v1::IngestionProgress>* DocumentServiceImpl::WatchIngestion(
    grpc::CallbackServerContext* context, const v1::WatchIngestionRequest* request) {
  auto* reactor = new QueuedWriteReactor<v1::IngestionProgress>();
  auto call = Begin(core_, context);
  if (!call.ok()) {
    reactor->Finish(ToGrpcStatus(call.status()));
    return reactor;
  }
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) {
    call->slot.reset();
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  std::thread([core = core_, reactor, doc = *id, call = std::move(call).value()]() mutable {
    const absl::Status status = core->WatchIngestion(
        call.caller, doc,
        [&](const IngestionProgress& p) {
          v1::IngestionProgress msg;
          msg.set_document_id(absl::StrCat(doc));
          msg.set_status(ToProto(p.record.status));
          msg.set_ingested_tokens(p.record.state_tokens);
          msg.set_num_tokens(p.record.num_tokens);
          msg.set_tokens_per_second(p.tokens_per_second);
          msg.set_eta_seconds(p.eta_seconds);
          msg.set_error(p.record.error);
          return reactor->Write(std::move(msg));
        },
        [&] { return reactor->cancelled(); });
    call.slot.reset();  // before the client can see the end of the call
    reactor->Finish(ToGrpcStatus(status));
  }).detach();
  return reactor;
}

}  // namespace tome::services
