#include "document_service.h"

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "status_util.h"
#include "write_reactor.h"

namespace tome::services {

absl::StatusOr<storage::DocumentId> ParseDocumentId(const std::string& text) {
  uint64_t id = 0;
  if (text.empty() || text.size() > 20 ||
      text.find_first_not_of("0123456789") != std::string::npos || !absl::SimpleAtoi(text, &id) ||
      id == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "document_id '", text.substr(0, 64), "' is not a document id (the decimal id that "
        "CreateDocument returned)"));
  }
  return id;
}

v1::DocumentStatus ToProto(storage::DocumentStatus status) {
  switch (status) {
    case storage::DocumentStatus::kEmpty: return v1::DOCUMENT_STATUS_EMPTY;
    case storage::DocumentStatus::kIngesting: return v1::DOCUMENT_STATUS_INGESTING;
    case storage::DocumentStatus::kReady: return v1::DOCUMENT_STATUS_READY;
    case storage::DocumentStatus::kFailed: return v1::DOCUMENT_STATUS_FAILED;
  }
  return v1::DOCUMENT_STATUS_UNSPECIFIED;
}

void ToProto(const storage::DocumentRecord& r, int64_t stored_bytes, v1::Document* out) {
  out->set_id(absl::StrCat(r.id));
  out->set_name(r.name);
  out->set_status(ToProto(r.status));
  out->set_version(r.version);
  out->set_text_bytes(r.text_bytes);
  out->set_num_tokens(r.num_tokens);
  out->set_ingested_tokens(r.state_tokens);
  out->set_stored_bytes(stored_bytes);
  out->mutable_create_time()->set_seconds(r.created_micros / 1000000);
  out->mutable_create_time()->set_nanos(static_cast<int32_t>(r.created_micros % 1000000) * 1000);
  out->mutable_update_time()->set_seconds(r.updated_micros / 1000000);
  out->mutable_update_time()->set_nanos(static_cast<int32_t>(r.updated_micros % 1000000) * 1000);
  out->set_error(r.error);
  for (const storage::VersionInfo& v : r.versions) {
    v1::DocumentVersion* version = out->add_versions();
    version->set_version(v.version);
    version->set_num_tokens(v.num_tokens);
    version->set_text_bytes(v.text_bytes);
    version->mutable_create_time()->set_seconds(v.created_micros / 1000000);
    version->mutable_create_time()->set_nanos(static_cast<int32_t>(v.created_micros % 1000000) *
                                              1000);
  }
}

namespace {

void FillDocument(TomeCore* core, const storage::DocumentRecord& record, v1::Document* out) {
  auto bytes = core->StoredBytes(record.id);
  ToProto(record, bytes.ok() ? *bytes : 0, out);
  auto sections = core->ListSections(record.id);
  out->set_num_sections(sections.ok() ? static_cast<int64_t>(sections->size()) : 0);
}

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

// Collects the streamed pieces of one AppendText call, then appends them at once.
class AppendReactor final : public grpc::ServerReadReactor<v1::AppendTextRequest> {
 public:
  AppendReactor(TomeCore* core, v1::AppendTextResponse* response)
      : core_(core), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // end of the client's stream
      Complete();
      return;
    }
    if (!request_.document_id().empty()) {
      if (!document_id_.empty() && request_.document_id() != document_id_) {
        Finish(ToGrpcStatus(absl::InvalidArgumentError(
            "every message of one AppendText stream must name the same document_id")));
        return;
      }
      document_id_ = request_.document_id();
    } else if (document_id_.empty()) {
      Finish(ToGrpcStatus(
          absl::InvalidArgumentError("the first AppendText message must set document_id")));
      return;
    }
    if (static_cast<int64_t>(text_.size() + request_.text().size()) >
        core_->max_document_bytes()) {
      Finish(ToGrpcStatus(absl::ResourceExhaustedError(absl::StrCat(
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
  void Complete() {
    if (document_id_.empty()) {
      Finish(ToGrpcStatus(absl::InvalidArgumentError("AppendText received no message")));
      return;
    }
    auto id = ParseDocumentId(document_id_);
    if (!id.ok()) {
      Finish(ToGrpcStatus(id.status()));
      return;
    }
    auto result = core_->AppendText(*id, text_, sections_);
    if (!result.ok()) {
      Finish(ToGrpcStatus(result.status()));
      return;
    }
    FillDocument(core_, result->record, response_->mutable_document());
    response_->set_appended_bytes(result->appended_bytes);
    response_->set_appended_tokens(result->appended_tokens);
    Finish(grpc::Status::OK);
  }

  TomeCore* core_;
  v1::AppendTextResponse* response_;
  v1::AppendTextRequest request_;
  std::string document_id_;
  std::string text_;
  std::vector<SectionStart> sections_;
};

}  // namespace

grpc::ServerUnaryReactor* DocumentServiceImpl::CreateDocument(
    grpc::CallbackServerContext* context, const v1::CreateDocumentRequest* request,
    v1::Document* response) {
  auto record = core_->CreateDocument(request->name());
  if (record.ok()) FillDocument(core_, *record, response);
  return Finish(context, record.status());
}

grpc::ServerReadReactor<v1::AppendTextRequest>* DocumentServiceImpl::AppendText(
    grpc::CallbackServerContext* context, v1::AppendTextResponse* response) {
  return new AppendReactor(core_, response);
}

grpc::ServerUnaryReactor* DocumentServiceImpl::GetDocument(grpc::CallbackServerContext* context,
                                                           const v1::GetDocumentRequest* request,
                                                           v1::Document* response) {
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return Finish(context, id.status());
  auto record = core_->GetDocument(*id);
  if (record.ok()) FillDocument(core_, *record, response);
  return Finish(context, record.status());
}

grpc::ServerUnaryReactor* DocumentServiceImpl::ListDocuments(
    grpc::CallbackServerContext* context, const v1::ListDocumentsRequest* request,
    v1::ListDocumentsResponse* response) {
  if (request->page_size() < 0 || request->page_size() > 1000) {
    return Finish(context, absl::InvalidArgumentError("page_size must be in [0, 1000]"));
  }
  storage::DocumentId after = 0;
  if (!request->page_token().empty()) {
    auto parsed = ParseDocumentId(request->page_token());
    if (!parsed.ok()) {
      return Finish(context, absl::InvalidArgumentError(
                                 "page_token must be a next_page_token from ListDocuments"));
    }
    after = *parsed;
  }
  const int limit = request->page_size() > 0 ? request->page_size() : 100;
  auto records = core_->ListDocuments(after, limit + 1);
  if (!records.ok()) return Finish(context, records.status());
  for (int i = 0; i < static_cast<int>(records->size()) && i < limit; ++i) {
    FillDocument(core_, (*records)[i], response->add_documents());
  }
  if (static_cast<int>(records->size()) > limit) {
    response->set_next_page_token(absl::StrCat((*records)[limit - 1].id));
  }
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* DocumentServiceImpl::DeleteDocument(
    grpc::CallbackServerContext* context, const v1::DeleteDocumentRequest* request,
    v1::DeleteDocumentResponse* response) {
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return Finish(context, id.status());
  return Finish(context, core_->DeleteDocument(*id));
}

grpc::ServerWriteReactor<v1::IngestionProgress>* DocumentServiceImpl::WatchIngestion(
    grpc::CallbackServerContext* context, const v1::WatchIngestionRequest* request) {
  auto* reactor = new QueuedWriteReactor<v1::IngestionProgress>();
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  std::thread([core = core_, reactor, doc = *id] {
    const absl::Status status = core->WatchIngestion(
        doc,
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
    reactor->Finish(ToGrpcStatus(status));
  }).detach();
  return reactor;
}

}  // namespace tome::services
