#include "cluster/router_server.h"

#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "auth/tenants.h"
#include "cluster/etcd_client.h"
#include "cluster/etcd_records.h"
#include "cluster/membership.h"
#include "cluster/router.h"
#include "cluster/router_services.h"
#include "metrics/http_exporter.h"
#include "metrics/metrics.h"
#include "metrics/rpc_interceptor.h"
#include "tome/base/status_macros.h"

namespace tome::services::cluster {
namespace {

constexpr const char* kRoutedServices[] = {"tome.v1.DocumentService", "tome.v1.QueryService",
                                           "tome.v1.SessionService"};

}  // namespace

struct RouterServer::Impl {
  Metrics metrics;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  std::unique_ptr<EtcdClient> etcd;
  std::unique_ptr<EtcdRecordStore> records;
  std::unique_ptr<TenantRegistry> tenants;
  std::unique_ptr<MembershipWatcher> membership;
  std::unique_ptr<Router> router;
  std::unique_ptr<RouterDocumentService> documents;
  std::unique_ptr<RouterQueryService> queries;
  std::unique_ptr<RouterSessionService> sessions;
  std::unique_ptr<RouterAdminService> admin;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool shut_down = false;
};

RouterServer::RouterServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RouterServer::~RouterServer() { Shutdown(absl::Seconds(1)); }

int RouterServer::port() const { return impl_->port; }

absl::StatusOr<std::unique_ptr<RouterServer>> RouterServer::Start(
    const RouterServerOptions& options) {
  const ServerOptions& so = options.server;
  if (options.peer_token.empty()) {
    return absl::InvalidArgumentError(
        "a router needs --peer_token_file (the secret it shares with the workers)");
  }
  TOME_ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials({so.tls_cert_file, so.tls_key_file,
                                                                 so.tls_client_ca_file}));
  // The worker-facing credentials are checked now so that a bad file fails the start.
  TOME_RETURN_IF_ERROR(MakeChannelCredentials(options.peer_tls).status());

  auto impl = std::make_unique<Impl>();
  TOME_ASSIGN_OR_RETURN(impl->etcd, EtcdClient::Connect(options.etcd_endpoint, options.etcd_tls));
  impl->records = std::make_unique<EtcdRecordStore>(impl->etcd.get(), options.cluster_prefix);
  impl->tenants = std::make_unique<TenantRegistry>(impl->records.get());
  impl->membership = std::make_unique<MembershipWatcher>(impl->etcd.get(), options.cluster_prefix);
  TOME_RETURN_IF_ERROR(impl->membership->Start());
  std::error_code ec;
  std::filesystem::create_directories(so.data_dir, ec);
  const std::string credentials_path =
      (std::filesystem::path(so.data_dir) / "bootstrap-credentials").string();
  TOME_RETURN_IF_ERROR(impl->tenants->Bootstrap(credentials_path));

  RouterOptions router_options;
  router_options.peer_token = options.peer_token;
  router_options.peer_tls = options.peer_tls;
  impl->router =
      std::make_unique<Router>(impl->membership.get(), impl->tenants.get(), router_options);
  impl->documents = std::make_unique<RouterDocumentService>(impl->router.get());
  impl->queries = std::make_unique<RouterQueryService>(impl->router.get());
  impl->sessions = std::make_unique<RouterSessionService>(impl->router.get());
  impl->admin = std::make_unique<RouterAdminService>(impl->router.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(so.listen_address, credentials, &impl->port);
  builder.SetMaxReceiveMessageSize(so.max_message_bytes);
  builder.RegisterService(impl->documents.get());
  builder.RegisterService(impl->queries.get());
  builder.RegisterService(impl->sessions.get());
  builder.RegisterService(impl->admin.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(NewRpcMetricsInterceptor(&impl->metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", so.listen_address, " (address in use?)"));
  }
  // Liveness (the overall status) is the process; readiness (the API services' status,
  // deploy/k8s/routers.yaml) needs at least one live worker to route to.
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  // A departure also starts the router's replica repair sweep.
  impl->membership->SetListener([health = impl->server->GetHealthCheckService(),
                                 router = impl->router.get()](
                                    const std::vector<WorkerInfo>& workers) {
    for (const char* service : kRoutedServices) {
      health->SetServingStatus(service, !workers.empty());
    }
    router->OnMembershipChange(workers);
  });
  if (!so.metrics_address.empty()) {
    impl->metrics.Help("tome_requests_total", "RPCs by method and status code", "counter");
    impl->metrics.Help("tome_request_seconds", "RPC latency in seconds", "histogram");
    impl->metrics.Gauge(
        "tome_cluster_live_workers", "workers registered in etcd", [m = impl->membership.get()] {
          return std::vector<std::pair<Metrics::Labels, double>>{{{}, double(m->workers().size())}};
        });
    TOME_ASSIGN_OR_RETURN(impl->metrics_http,
                          MetricsHttpServer::Start(so.metrics_address, &impl->metrics));
  }
  LOG(INFO) << "tomed router serving on port " << impl->port << " (etcd " << options.etcd_endpoint
            << ", prefix " << options.cluster_prefix << ", " << impl->membership->workers().size()
            << " live workers)";
  return std::unique_ptr<RouterServer>(new RouterServer(std::move(impl)));
}

void RouterServer::Shutdown(absl::Duration grace) {
  if (!impl_ || impl_->shut_down) return;
  impl_->shut_down = true;
  impl_->membership->SetListener(nullptr);
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  impl_->metrics_http.reset();
  impl_->router->StopRepairs();  // its sweeps read the membership
  impl_->membership.reset();  // stops the watch before the etcd client goes
}

}  // namespace tome::services::cluster
