#include "tome/services/server.h"

#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "document_service.h"
#include "query_service.h"
#include "tome/base/status_macros.h"
#include "tome_core.h"

namespace tome::services {

struct TomeServer::Impl {
  std::unique_ptr<TomeCore> core;
  std::unique_ptr<DocumentServiceImpl> documents;
  std::unique_ptr<QueryServiceImpl> queries;
  std::unique_ptr<grpc::Server> server;
  bool shut_down = false;
};

TomeServer::TomeServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TomeServer::~TomeServer() { Shutdown(absl::Seconds(1)); }

absl::StatusOr<std::unique_ptr<TomeServer>> TomeServer::Start(const ServerOptions& options) {
  auto impl = std::make_unique<Impl>();
  CoreOptions core_options;
  core_options.model_dir = options.model_dir;
  core_options.data_dir = options.data_dir;
  core_options.num_threads = options.num_threads;
  core_options.dense_mode = options.dense_mode;
  core_options.checkpoint_tokens = options.checkpoint_tokens;
  core_options.max_document_bytes = options.max_document_bytes;
  core_options.sync_writes = options.sync_writes;
  TOME_ASSIGN_OR_RETURN(impl->core, TomeCore::Create(core_options));
  impl->documents = std::make_unique<DocumentServiceImpl>(impl->core.get());
  impl->queries = std::make_unique<QueryServiceImpl>(impl->core.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.RegisterService(impl->documents.get());
  builder.RegisterService(impl->queries.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address, " (address in use?)"));
  }
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  LOG(INFO) << "tomed serving on port " << port;
  std::unique_ptr<TomeServer> server(new TomeServer(std::move(impl)));
  server->port_ = port;
  return server;
}

std::shared_ptr<grpc::Channel> TomeServer::InProcessChannel() {
  return impl_->server->InProcessChannel(grpc::ChannelArguments());
}

void TomeServer::Shutdown(absl::Duration grace) {
  if (!impl_ || impl_->shut_down) return;
  impl_->shut_down = true;
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  impl_->core.reset();  // stops ingestion, closes the store
}

void TomeServer::Wait() { impl_->server->Wait(); }

TomeCore* TomeServer::core() { return impl_ ? impl_->core.get() : nullptr; }

}  // namespace tome::services
