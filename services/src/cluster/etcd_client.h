// A small client of etcd's v3 gRPC API (KV, Lease, Watch; the subset declared in
// proto/etcd/v3/etcd_subset.proto), enough for worker registration, membership watches and
// the routers' tenant records. gRPC to one endpoint (etcd's client URL, e.g. 127.0.0.1:2379
// or a Kubernetes Service name), plaintext or TLS (with a client certificate when etcd runs
// with --client-cert-auth). Thread-safe; calls block.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tome/services/tls.h"

namespace tome::services::cluster {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

struct EtcdEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  EtcdKeyValue kv;  // for kDelete, only the key and mod_revision
};

struct EtcdRange {
  std::vector<EtcdKeyValue> kvs;
  int64_t revision = 0;  // the store revision the range was read at
};

// The key just after every key starting with `prefix` (etcd's range_end for a prefix).
std::string PrefixRangeEnd(const std::string& prefix);

class EtcdClient {
 public:
  // A client of the etcd at `endpoint` (host:port). Does not connect yet; every call has
  // `call_timeout`.
  explicit EtcdClient(const std::string& endpoint, absl::Duration call_timeout = absl::Seconds(5));
  // The same over TLS when `tls.enabled`; InvalidArgument for unusable certificate files.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Connect(
      const std::string& endpoint, const ClientTlsOptions& tls,
      absl::Duration call_timeout = absl::Seconds(5));
  ~EtcdClient();

  const std::string& endpoint() const { return endpoint_; }

  // Unavailable (with the endpoint named) when etcd cannot be reached.
  absl::StatusOr<EtcdRange> GetPrefix(const std::string& prefix);
  // NotFound when absent.
  absl::StatusOr<EtcdKeyValue> Get(const std::string& key);
  // Returns the revision of the write. `lease` 0: none.
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value, int64_t lease = 0);
  absl::Status Delete(const std::string& key);
  // Writes `value` only if the key's mod revision is still `expected_mod_revision` (0: the
  // key must not exist). Returns whether it wrote.
  absl::StatusOr<bool> CompareAndPut(const std::string& key, int64_t expected_mod_revision,
                                     const std::string& value);

  // A lease of `ttl_seconds`; returns its id.
  absl::StatusOr<int64_t> GrantLease(int64_t ttl_seconds);
  absl::Status RevokeLease(int64_t lease);
  // Refreshes `lease`; returns its remaining TTL in seconds (0: it has expired).
  absl::StatusOr<int64_t> KeepAlive(int64_t lease);

  // Streams the changes of keys under `prefix` after revision `start_revision - 1` to
  // `on_events` (a batch per watch response) until the stream fails or CancelWatches() is
  // called. Returns the reason it ended (Cancelled after CancelWatches; OutOfRange when
  // etcd compacted past start_revision: read the prefix again).
  absl::Status Watch(const std::string& prefix, int64_t start_revision,
                     const std::function<void(const std::vector<EtcdEvent>&)>& on_events);
  // Ends the running Watch calls (and makes later ones return at once).
  void CancelWatches();

 private:
  struct Stubs;
  EtcdClient(std::shared_ptr<grpc::Channel> channel, const std::string& endpoint,
             absl::Duration call_timeout);
  std::unique_ptr<grpc::ClientContext> NewContext() const;

  const std::string endpoint_;
  const absl::Duration call_timeout_;
  std::unique_ptr<Stubs> stubs_;
  std::mutex mu_;
  bool cancelled_ = false;
  std::vector<grpc::ClientContext*> watches_;  // guarded by mu_
};

}  // namespace tome::services::cluster
