#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cluster/router_services.h"
#include "cluster/session_ids.h"
#include "request_validation.h"
#include "status_util.h"

namespace tome::services::cluster {
namespace {

auto SessionStub(const Target& t) { return v1::SessionService::NewStub(t.channel); }

// Worker session ids -> router session ids (which carry the document).
void Rewrite(v1::Session* session) {
  uint64_t document = 0;
  if (!absl::SimpleAtoi(session->document_id(), &document)) return;
  session->set_id(EncodeSessionId(session->id(), document));
  if (!session->parent_session_id().empty()) {
    session->set_parent_session_id(EncodeSessionId(session->parent_session_id(), document));
  }
}

}  // namespace

grpc::Status RouterSessionService::CreateSession(grpc::ServerContext* context,
                                                 const v1::CreateSessionRequest* request,
                                                 v1::Session* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  grpc::Status s = router_->OnDocument(
      *id, *context, *caller, false, true, [&](const Target& t, grpc::ClientContext* client) {
        return SessionStub(t)->CreateSession(client, *request, response);
      });
  if (s.ok()) Rewrite(response);
  return s;
}

grpc::Status RouterSessionService::GetSession(grpc::ServerContext* context,
                                              const v1::GetSessionRequest* request,
                                              v1::Session* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto session = DecodeSessionId(request->session_id());
  if (!session.ok()) return ToGrpcStatus(session.status());
  v1::GetSessionRequest forwarded;
  forwarded.set_session_id(session->first);
  grpc::Status s =
      router_->OnDocument(session->second, *context, *caller, false, true,
                          [&](const Target& t, grpc::ClientContext* client) {
                            return SessionStub(t)->GetSession(client, forwarded, response);
                          });
  if (s.ok()) Rewrite(response);
  return s;
}

grpc::Status RouterSessionService::ListSessions(grpc::ServerContext* context,
                                                const v1::ListSessionsRequest* request,
                                                v1::ListSessionsResponse* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (!request->document_id().empty()) {
    auto id = ParseDocumentId(request->document_id());
    if (!id.ok()) return ToGrpcStatus(id.status());
    grpc::Status s = router_->OnDocument(
        *id, *context, *caller, false, true, [&](const Target& t, grpc::ClientContext* client) {
          return SessionStub(t)->ListSessions(client, *request, response);
        });
    if (s.ok()) {
      for (v1::Session& session : *response->mutable_sessions()) Rewrite(&session);
    }
    return s;
  }
  for (const Target& t : router_->LiveWorkers()) {  // all of the caller's sessions
    v1::ListSessionsResponse part;
    grpc::Status s =
        SessionStub(t)->ListSessions(router_->Forward(*context, *caller).get(), *request, &part);
    if (!s.ok()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("worker ", t.worker_id, " could not list sessions (",
                                       s.error_message(), "); retry shortly"));
    }
    for (v1::Session& session : *part.mutable_sessions()) {
      Rewrite(&session);
      *response->add_sessions() = std::move(session);
    }
  }
  return grpc::Status::OK;
}

grpc::Status RouterSessionService::ForkSession(grpc::ServerContext* context,
                                               const v1::ForkSessionRequest* request,
                                               v1::Session* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto session = DecodeSessionId(request->session_id());
  if (!session.ok()) return ToGrpcStatus(session.status());
  v1::ForkSessionRequest forwarded;
  forwarded.set_session_id(session->first);
  grpc::Status s =
      router_->OnDocument(session->second, *context, *caller, false, true,
                          [&](const Target& t, grpc::ClientContext* client) {
                            return SessionStub(t)->ForkSession(client, forwarded, response);
                          });
  if (s.ok()) Rewrite(response);
  return s;
}

grpc::Status RouterSessionService::DeleteSession(grpc::ServerContext* context,
                                                 const v1::DeleteSessionRequest* request,
                                                 v1::DeleteSessionResponse* response) {
  auto caller = router_->Authenticate(*context, false);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto session = DecodeSessionId(request->session_id());
  if (!session.ok()) return ToGrpcStatus(session.status());
  v1::DeleteSessionRequest forwarded;
  forwarded.set_session_id(session->first);
  return router_->OnDocument(session->second, *context, *caller, false, true,
                             [&](const Target& t, grpc::ClientContext* client) {
                               return SessionStub(t)->DeleteSession(client, forwarded, response);
                             });
}

}  // namespace tome::services::cluster
