#include "absl/strings/str_cat.h"
#include "cluster/router_services.h"
#include "cluster/session_ids.h"
#include "request_validation.h"
#include "status_util.h"

namespace tome::services::cluster {

grpc::Status RouterQueryService::Ask(grpc::ServerContext* context, const v1::AskRequest* request,
                                     grpc::ServerWriter<v1::AskResponse>* writer) {
  auto caller = router_->Authenticate(*context, /*admin=*/false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  v1::AskRequest forwarded = *request;
  storage::DocumentId document = 0;
  if (!request->session_id().empty()) {
    if (!request->document_id().empty() || request->version() != 0) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          "give either session_id or document_id (and version), not both"));
    }
    auto session = DecodeSessionId(request->session_id());
    if (!session.ok()) return ToGrpcStatus(session.status());
    forwarded.set_session_id(session->first);
    document = session->second;
  } else {
    auto id = ParseDocumentId(request->document_id());
    if (!id.ok()) return ToGrpcStatus(id.status());
    document = *id;
  }
  bool relayed = false;
  return router_->OnDocument(
      document, *context, *caller, /*wait_ready=*/true, /*use_cache=*/true,
      [&](const Target& t, grpc::ClientContext* client) {
        auto reader = v1::QueryService::NewStub(t.channel)->Ask(client, forwarded);
        v1::AskResponse response;
        while (reader->Read(&response)) {
          relayed = true;
          if (response.has_summary() && !response.summary().session_id().empty()) {
            response.mutable_summary()->set_session_id(
                EncodeSessionId(response.summary().session_id(), document));
          }
          if (!writer->Write(response)) client->TryCancel();  // the caller went away
        }
        return reader->Finish();
      },
      [&] { return !relayed; });
}

}  // namespace tome::services::cluster
