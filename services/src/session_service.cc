#include "session_service.h"

#include "absl/strings/str_cat.h"
#include "auth/call_auth.h"
#include "document_service.h"
#include "status_util.h"

namespace tome::services {
namespace {

void ToProto(const SessionInfo& s, v1::Session* out) {
  out->set_id(s.id);
  out->set_document_id(absl::StrCat(s.document));
  out->set_document_version(s.version);
  out->set_turns(s.turns);
  out->set_tail_tokens(static_cast<int64_t>(s.tail.size()));
  SetTimestamp(s.created_micros, out->mutable_create_time());
  SetTimestamp(s.expire_micros(), out->mutable_expire_time());
  out->set_parent_session_id(s.parent);
}

}  // namespace

grpc::ServerUnaryReactor* SessionServiceImpl::CreateSession(
    grpc::CallbackServerContext* context, const v1::CreateSessionRequest* request,
    v1::Session* response) {
  auto caller = AuthenticateTenant(*core_, *context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  if (request->document_version() < 0) {
    return FinishUnary(context, absl::InvalidArgumentError("document_version must be >= 0"));
  }
  auto session = core_->CreateSession(*caller, *id, request->document_version());
  if (session.ok()) ToProto(*session, response);
  return FinishUnary(context, session.status());
}

grpc::ServerUnaryReactor* SessionServiceImpl::GetSession(grpc::CallbackServerContext* context,
                                                         const v1::GetSessionRequest* request,
                                                         v1::Session* response) {
  auto caller = AuthenticateTenant(*core_, *context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  auto session = core_->GetSession(*caller, request->session_id());
  if (session.ok()) ToProto(*session, response);
  return FinishUnary(context, session.status());
}

grpc::ServerUnaryReactor* SessionServiceImpl::ListSessions(
    grpc::CallbackServerContext* context, const v1::ListSessionsRequest* request,
    v1::ListSessionsResponse* response) {
  auto caller = AuthenticateTenant(*core_, *context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  storage::DocumentId document = 0;
  if (!request->document_id().empty()) {
    auto id = ParseDocumentId(request->document_id());
    if (!id.ok()) return FinishUnary(context, id.status());
    document = *id;
  }
  auto sessions = core_->ListSessions(*caller, document);
  if (sessions.ok()) {
    for (const SessionInfo& s : *sessions) ToProto(s, response->add_sessions());
  }
  return FinishUnary(context, sessions.status());
}

grpc::ServerUnaryReactor* SessionServiceImpl::ForkSession(grpc::CallbackServerContext* context,
                                                          const v1::ForkSessionRequest* request,
                                                          v1::Session* response) {
  auto caller = AuthenticateTenant(*core_, *context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  auto session = core_->ForkSession(*caller, request->session_id());
  if (session.ok()) ToProto(*session, response);
  return FinishUnary(context, session.status());
}

grpc::ServerUnaryReactor* SessionServiceImpl::DeleteSession(
    grpc::CallbackServerContext* context, const v1::DeleteSessionRequest* request,
    v1::DeleteSessionResponse* response) {
  auto caller = AuthenticateTenant(*core_, *context);
  if (!caller.ok()) return FinishUnary(context, caller.status());
  return FinishUnary(context, core_->DeleteSession(*caller, request->session_id()));
}

}  // namespace tome::services
