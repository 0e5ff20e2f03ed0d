// `session create|get|list|fork|delete`: conversations on a document version.
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/output.h"

namespace tome::cli {
namespace {

int Create(Client& client, const Args& args) {
  v1::CreateSessionRequest request;
  request.set_document_id(args[0]);
  request.set_document_version(absl::GetFlag(FLAGS_doc_version));
  v1::Session session;
  grpc::Status status = client.sessions().CreateSession(client.Context().get(), request, &session);
  if (!status.ok()) return Fail(status);
  PrintSession(session);
  return 0;
}

int Get(Client& client, const Args& args) {
  v1::GetSessionRequest request;
  request.set_session_id(args[0]);
  v1::Session session;
  grpc::Status status = client.sessions().GetSession(client.Context().get(), request, &session);
  if (!status.ok()) return Fail(status);
  PrintSession(session);
  return 0;
}

int List(Client& client, const Args& args) {
  v1::ListSessionsRequest request;
  if (!args.empty()) request.set_document_id(args[0]);
  v1::ListSessionsResponse response;
  grpc::Status status = client.sessions().ListSessions(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(status);
  bool header = true;
  for (const v1::Session& s : response.sessions()) {
    PrintSessionRow(s, header);
    header = false;
  }
  if (header && !absl::GetFlag(FLAGS_json)) std::printf("no sessions\n");
  return 0;
}

int Fork(Client& client, const Args& args) {
  v1::ForkSessionRequest request;
  request.set_session_id(args[0]);
  v1::Session session;
  grpc::Status status = client.sessions().ForkSession(client.Context().get(), request, &session);
  if (!status.ok()) return Fail(status);
  PrintSession(session);
  return 0;
}

int Delete(Client& client, const Args& args) {
  v1::DeleteSessionRequest request;
  request.set_session_id(args[0]);
  v1::DeleteSessionResponse response;
  grpc::Status status =
      client.sessions().DeleteSession(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
  } else {
    std::printf("deleted session %s\n", args[0].c_str());
  }
  return 0;
}

}  // namespace

std::vector<Command> SessionCommands() {
  return {
      {"session", "create", "DOC",
       "start a conversation on a document (--version=N: on that version)", 1, 1, Create},
      {"session", "get", "SESSION", "show a session", 1, 1, Get},
      {"session", "list", "[DOC]", "list your sessions (of one document)", 0, 1, List},
      {"session", "fork", "SESSION", "copy a session; the copy goes its own way", 1, 1, Fork},
      {"session", "delete", "SESSION", "delete a session", 1, 1, Delete},
  };
}

}  // namespace tome::cli
