// A router process's gRPC server (tomed --role=router): the public services over a Router,
// the standard health service, reflection and Prometheus RPC metrics. Keeps no data of its
// own: tenants and keys are in etcd, documents on the workers.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tome/services/server.h"
#include "tome/services/tls.h"

namespace tome::services::cluster {

struct RouterServerOptions {
  // listen_address, max_message_bytes, tls_*, metrics_address and data_dir (where the first
  // router of a new cluster writes bootstrap-credentials) are read; the rest is ignored.
  ServerOptions server;
  std::string etcd_endpoint = "127.0.0.1:2379";
  ClientTlsOptions etcd_tls;
  std::string cluster_prefix = "/tome";
  std::string peer_token;
  ClientTlsOptions peer_tls;
};

class RouterServer {
 public:
  // Fails (with what to fix) on bad TLS files or when etcd cannot be read.
  static absl::StatusOr<std::unique_ptr<RouterServer>> Start(const RouterServerOptions& options);
  ~RouterServer();

  int port() const;
  void Shutdown(absl::Duration grace = absl::Seconds(5));

 private:
  struct Impl;
  explicit RouterServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tome::services::cluster
