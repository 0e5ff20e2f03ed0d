#include "cli/client.h"

#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/flags.h"
#include "cli/output.h"

namespace tome::cli {

Client::Client(std::shared_ptr<grpc::Channel> channel, std::string api_key,
               std::string admin_key)
    : channel_(std::move(channel)), api_key_(std::move(api_key)),
      admin_key_(std::move(admin_key)) {
  documents_ = v1::DocumentService::NewStub(channel_);
  queries_ = v1::QueryService::NewStub(channel_);
  sessions_ = v1::SessionService::NewStub(channel_);
  admin_ = v1::AdminService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Client::Context(bool admin) const {
  auto context = std::make_unique<grpc::ClientContext>();
  const std::string& key = admin ? admin_key_ : api_key_;
  if (!key.empty()) context->AddMetadata("authorization", "Bearer " + key);
  const double timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000)));
  }
  return context;
}

int Fail(const grpc::Status& status) {
  std::fprintf(stderr, "error: %s: %s\n", StatusCodeName(status.error_code()),
               status.error_message().c_str());
  return 1;
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "error: %s\nrun `tome --help` for usage\n", message.c_str());
  return 2;
}

int Error(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

}  // namespace tome::cli
