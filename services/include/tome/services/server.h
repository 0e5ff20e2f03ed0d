// The tomed gRPC server: DocumentService, QueryService, the standard grpc.health.v1 health
// service and server reflection, over a TomeCore.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tome/engine/config.h"

namespace grpc {
class Channel;
class Server;
}  // namespace grpc

namespace tome::services {

class TomeCore;

struct ServerOptions {
  // Model and data.
  std::string model_dir;
  std::string data_dir;
  int num_threads = 0;
  // Engine placement (CoreOptions): "cpu" or "cuda", the first CUDA device, and the number
  // of ranks the model is split over.
  std::string device = "cpu";
  int cuda_device = 0;
  int tensor_parallel = 1;
  engine::DenseThresholdMode dense_mode = engine::DenseThresholdMode::kAlwaysSparse;
  int64_t checkpoint_tokens = 0;  // 0: the default policy (DefaultCheckpointTokens)
  int64_t max_document_bytes = int64_t{1} << 30;
  bool sync_writes = true;
  // Memory for document states at their last checkpoint, and sessions kept in memory
  // (CoreOptions); both are caches over the store.
  int64_t state_cache_bytes = int64_t{2} << 30;
  int session_states = 64;
  // Storage-backed attention (CoreOptions): states with more KV than this load on demand.
  int64_t resident_kv_limit_bytes = int64_t{4} << 30;
  int64_t block_cache_bytes = int64_t{1} << 30;
  int64_t host_block_cache_bytes = int64_t{2} << 30;
  // Threads reading KV blocks from the store in parallel (StoreOptions::read_threads).
  int store_read_threads = 8;
  // Helper threads running store batches in parallel (block fetches, state opening).
  int fetch_threads = 3;
  // Admission control (CoreOptions): engine memory all running questions may reserve
  // (0: no limit), and how long one waits for it.
  int64_t ask_memory_bytes = 0;
  int64_t admission_wait_ms = 30000;
  // Engine memory the states of documents being ingested may hold together (0: no limit).
  int64_t ingest_memory_bytes = 0;
  // Network. Port 0 picks a free port (see TomeServer::port()).
  std::string listen_address = "127.0.0.1:7070";
  int max_message_bytes = 4 << 20;
  // TLS on the gRPC port: PEM certificate chain and key (empty = plaintext), and a CA whose
  // client certificates are required (mutual TLS; empty = no client certificates).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Prometheus metrics over HTTP at http://<address>/metrics; empty disables them. Always
  // plaintext: keep it on loopback or a private network.
  std::string metrics_address;
  // Cluster worker (tomed --role=worker): accept only calls forwarded by routers holding this
  // shared token, and serve the internal WorkerService. Empty: single-process mode.
  std::string peer_token;
};

class TomeServer {
 public:
  // Loads the model, opens the store, resumes unfinished ingestion and starts serving.
  static absl::StatusOr<std::unique_ptr<TomeServer>> Start(const ServerOptions& options);
  ~TomeServer();

  int port() const { return port_; }
  // The port of the metrics endpoint (0 when disabled).
  int metrics_port() const { return metrics_port_; }
  // A channel to this server without a network hop (tests); its calls carry `api_key`.
  std::shared_ptr<grpc::Channel> InProcessChannel(const std::string& api_key = "");
  // <data_dir>/bootstrap-credentials (TOME_ADMIN_KEY, TOME_API_KEY), written on first start.
  std::string credentials_path() const;
  // Stops accepting calls, cancels those still running after `grace`, stops ingestion.
  void Shutdown(absl::Duration grace = absl::Seconds(5));
  // Blocks until Shutdown has completed.
  void Wait();
  // The domain core (tests and in-process tools); null after Shutdown.
  TomeCore* core();

 private:
  struct Impl;
  explicit TomeServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string data_dir_;
};

}  // namespace tome::services
