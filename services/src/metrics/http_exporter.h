// Serves Metrics::Render() at http://<address>/metrics: one thread, one connection at a time
// (a scraper every few seconds). Plain sockets: Debian's civetweb starts its threads with a
// fixed small stack, which glibc refuses in a process carrying OpenBLAS's thread-local
// storage ("Cannot create first worker thread").
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "metrics/metrics.h"

namespace tome::services {

class MetricsHttpServer {
 public:
  // `address` is "host:port" with a numeric IPv4 host (port 0 picks one; see port()).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  Metrics* metrics);
  ~MetricsHttpServer();
  int port() const { return port_; }

 private:
  explicit MetricsHttpServer(Metrics* metrics) : metrics_(metrics) {}
  void Serve();
  void Answer(int fd);

  Metrics* metrics_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tome::services
