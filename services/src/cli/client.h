// The CLI's connection to tomed: stubs of every service, and call contexts that carry the
// API key and the --timeout deadline.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tome/v1/admin.grpc.pb.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"
#include "tome/v1/sessions.grpc.pb.h"

namespace tome::cli {

class Client {
 public:
  // `channel`: to tomed, plaintext or TLS (see tome_main.cc).
  Client(std::shared_ptr<grpc::Channel> channel, std::string api_key, std::string admin_key);

  // A context for one call: `authorization: Bearer <key>` (the admin key for AdminService
  // calls) when a key is known, and the deadline of --timeout.
  std::unique_ptr<grpc::ClientContext> Context(bool admin = false) const;

  grpc::Channel& channel() { return *channel_; }
  v1::DocumentService::Stub& documents() { return *documents_; }
  v1::QueryService::Stub& queries() { return *queries_; }
  v1::SessionService::Stub& sessions() { return *sessions_; }
  v1::AdminService::Stub& admin() { return *admin_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DocumentService::Stub> documents_;
  std::unique_ptr<v1::QueryService::Stub> queries_;
  std::unique_ptr<v1::SessionService::Stub> sessions_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::string api_key_;
  std::string admin_key_;
};

// Prints "error: CODE: message" on stderr; returns 1 (the exit code of RPC errors).
int Fail(const grpc::Status& status);
// Prints the usage error on stderr; returns 2 (the exit code of usage errors).
int Usage(const std::string& message);
// Prints "error: message" on stderr; returns 1 (local failures: unreadable input, ...).
int Error(const std::string& message);

}  // namespace tome::cli
