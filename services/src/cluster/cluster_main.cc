#include "cluster/cluster_main.h"

#include <glog/logging.h>
#include <unistd.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cluster/etcd_client.h"
#include "cluster/peer_auth.h"
#include "cluster/router_server.h"
#include "cluster/worker_registration.h"

ABSL_FLAG(std::string, role, "single",
          "single (one process: API, engine and store), router (stateless: auth and routing "
          "to workers found in etcd) or worker (engine and store, behind routers)");
ABSL_FLAG(std::string, etcd, "127.0.0.1:2379", "router/worker: etcd client endpoint host:port");
ABSL_FLAG(std::string, etcd_tls_ca, "",
          "router/worker: PEM CA that signed etcd's certificate: speak TLS to etcd");
ABSL_FLAG(std::string, etcd_tls_cert, "",
          "router/worker: PEM client certificate for etcd (etcd --client-cert-auth)");
ABSL_FLAG(std::string, etcd_tls_key, "", "router/worker: PEM key of --etcd_tls_cert");
ABSL_FLAG(std::string, etcd_tls_server_name, "",
          "router/worker: name to verify in etcd's certificate instead of --etcd's host");
ABSL_FLAG(std::string, cluster_prefix, "/tome",
          "router/worker: etcd key prefix of this cluster (several clusters may share an etcd)");
ABSL_FLAG(std::string, peer_token_file, "",
          "router/worker: file whose first line is the secret routers show workers "
          "(at least 16 bytes; same file on every router and worker)");
ABSL_FLAG(std::string, worker_id, "",
          "worker: stable id in etcd and for placement (default: --advertise); keep it across "
          "restarts so that the worker gets its documents back");
ABSL_FLAG(std::string, advertise, "",
          "worker: host:port routers dial (default: the --listen host, or this host's name "
          "for 0.0.0.0, and the bound port)");
ABSL_FLAG(int64_t, etcd_lease_seconds, 10,
          "worker: TTL of its etcd registration; a dead worker leaves the routers' set after it");
ABSL_FLAG(std::string, peer_tls_ca, "",
          "router: PEM CA that signed the workers' certificates: dial workers over TLS");
ABSL_FLAG(std::string, peer_tls_cert, "",
          "router: PEM client certificate presented to workers (mutual TLS; with --peer_tls_key)");
ABSL_FLAG(std::string, peer_tls_key, "", "router: PEM key of --peer_tls_cert");
ABSL_FLAG(std::string, peer_tls_server_name, "",
          "router: name to verify in the workers' certificates instead of their host");

namespace tome::services::cluster {
namespace {

void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fprintf(f, "%d\n", port);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
  }
}

std::string DefaultAdvertise(const std::string& listen, int port) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") {
    char name[256] = {};
    host = gethostname(name, sizeof(name) - 1) == 0 ? name : "127.0.0.1";
  }
  return absl::StrCat(host, ":", port);
}

ClientTlsOptions EtcdTlsFromFlags() {
  ClientTlsOptions tls;
  tls.ca_file = absl::GetFlag(FLAGS_etcd_tls_ca);
  tls.cert_file = absl::GetFlag(FLAGS_etcd_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_etcd_tls_key);
  tls.server_name = absl::GetFlag(FLAGS_etcd_tls_server_name);
  tls.enabled = !tls.ca_file.empty() || !tls.cert_file.empty();
  return tls;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tomed: %s\n", status.ToString().c_str());
  return 1;
}

int Wait(const sigset_t& signals) {
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  LOG(INFO) << "signal " << signal_number << ": shutting down";
  return signal_number;
}

int RunRouter(const ServerOptions& options, const std::string& token, const std::string& port_file,
              const sigset_t& signals) {
  RouterServerOptions router;
  router.server = options;
  router.etcd_endpoint = absl::GetFlag(FLAGS_etcd);
  router.etcd_tls = EtcdTlsFromFlags();
  router.cluster_prefix = absl::GetFlag(FLAGS_cluster_prefix);
  router.peer_token = token;
  router.peer_tls.ca_file = absl::GetFlag(FLAGS_peer_tls_ca);
  router.peer_tls.cert_file = absl::GetFlag(FLAGS_peer_tls_cert);
  router.peer_tls.key_file = absl::GetFlag(FLAGS_peer_tls_key);
  router.peer_tls.server_name = absl::GetFlag(FLAGS_peer_tls_server_name);
  router.peer_tls.enabled = !router.peer_tls.ca_file.empty() || !router.peer_tls.cert_file.empty();
  auto server = RouterServer::Start(router);
  if (!server.ok()) return Fail(server.status());
  WritePortFile(port_file, (*server)->port());
  Wait(signals);
  (*server)->Shutdown();
  return 0;
}

int RunWorker(ServerOptions options, const std::string& token, const std::string& port_file,
              const sigset_t& signals) {
  options.peer_token = token;
  const int64_t ttl = absl::GetFlag(FLAGS_etcd_lease_seconds);
  if (ttl < 2 || ttl > 3600) {
    std::fprintf(stderr, "tomed: --etcd_lease_seconds must be in [2, 3600]\n");
    return 2;
  }
  auto etcd = EtcdClient::Connect(absl::GetFlag(FLAGS_etcd), EtcdTlsFromFlags());
  if (!etcd.ok()) return Fail(etcd.status());
  auto server = TomeServer::Start(options);
  if (!server.ok()) return Fail(server.status());
  WorkerInfo self;
  self.address = absl::GetFlag(FLAGS_advertise);
  if (self.address.empty())
    self.address = DefaultAdvertise(options.listen_address, (*server)->port());
  self.id = absl::GetFlag(FLAGS_worker_id);
  if (self.id.empty()) self.id = self.address;
  auto registration =
      WorkerRegistration::Start(etcd->get(), absl::GetFlag(FLAGS_cluster_prefix), self, ttl);
  if (!registration.ok()) return Fail(registration.status());
  WritePortFile(port_file, (*server)->port());
  Wait(signals);
  registration->reset();  // routers stop sending calls here before the server stops
  (*server)->Shutdown();
  return 0;
}

}  // namespace

int RunClusterRole(const ServerOptions& options, const std::string& port_file,
                   const sigset_t& signals) {
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role == "single") return -1;
  if (role != "router" && role != "worker") {
    std::fprintf(stderr, "tomed: --role must be single, router or worker\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_peer_token_file).empty()) {
    std::fprintf(stderr,
                 "tomed: --role=%s needs --peer_token_file (a secret shared by routers and "
                 "workers, e.g. from `openssl rand -hex 32`)\n",
                 role.c_str());
    return 2;
  }
  auto token = ReadPeerToken(absl::GetFlag(FLAGS_peer_token_file));
  if (!token.ok()) return Fail(token.status());
  return role == "router" ? RunRouter(options, *token, port_file, signals)
                          : RunWorker(options, *token, port_file, signals);
}

}  // namespace tome::services::cluster
