// The routing core of a router (tomed --role=router): authenticates callers against the
// tenants in etcd, places documents on live workers by rendezvous hashing, finds the worker
// that serves a document (taking it over from its replica when the owner is gone) and keeps
// each document's replica text on its second-ranked worker. Holds no state that a restart
// loses: placement follows from the document id and the live workers, sessions carry their
// document (session_ids.h), tenants live in etcd. Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/tenants.h"
#include "cluster/membership.h"
#include "tome/services/tls.h"

namespace tome::services::cluster {

struct RouterOptions {
  std::string peer_token;     // shared with the workers (peer_auth.h)
  ClientTlsOptions peer_tls;  // how to dial workers (TLS / mutual TLS)
  absl::Duration internal_timeout = absl::Seconds(30);
};

// An authenticated caller; `tenant` is set for tenant callers.
struct Caller {
  Principal principal;
  std::optional<TenantInfo> tenant;
};

// A worker to send a call to.
struct Target {
  std::string worker_id;
  std::shared_ptr<grpc::Channel> channel;
};

class Router {
 public:
  Router(MembershipWatcher* membership, TenantRegistry* tenants, RouterOptions options);
  ~Router();  // StopRepairs()
  // Stops the replica repair thread (waits for a running sweep to see it); idempotent.
  // Call before the membership watcher goes.
  void StopRepairs();

  TenantRegistry& tenants() { return *tenants_; }

  // The caller of `context` from its bearer key. Unauthenticated for a missing or unknown
  // key; PermissionDenied when `admin` does not match (admin calls need the admin key,
  // document calls a tenant's key).
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext& context, bool admin);

  // A context for forwarding `server`'s call: its deadline and cancellation, and the caller.
  std::unique_ptr<grpc::ClientContext> Forward(const grpc::ServerContext& server,
                                               const Caller& caller);
  // A context for router-initiated calls (internal_timeout, or `deadline` when later).
  std::unique_ptr<grpc::ClientContext> Internal(const Caller& caller,
                                                std::optional<absl::Time> deadline = {});

  // Every live worker.
  std::vector<Target> LiveWorkers();
  // A fresh cluster-wide document id (random, >= storage::kMinChosenDocumentId, < 2^53 so
  // that JSON clients keep it exact).
  storage::DocumentId NewDocumentId();
  // The worker a new document `id` goes to (its first-ranked live worker).
  absl::StatusOr<Target> PlaceNew(storage::DocumentId id);

  // Runs `call` on the worker serving document `id`: the cached one, else the first in
  // rendezvous order that holds it or could take it over (EnsureDocument; `wait_ready`
  // waits for a take-over's prefill). If a cached worker answers NotFound or Unavailable and
  // `may_retry()` allows, the cache is dropped and the call retried once. NotFound when no
  // live worker has the document; Unavailable when no worker is live.
  grpc::Status OnDocument(
      storage::DocumentId id, const grpc::ServerContext& server, const Caller& caller,
      bool wait_ready, bool use_cache,
      const std::function<grpc::Status(const Target&, grpc::ClientContext*)>& call,
      const std::function<bool()>& may_retry = [] { return true; });

  // Copies document `id`'s text and metadata from `owner` to its replica holder (the first
  // other worker in rendezvous order), sending only what the replica lacks. Best effort:
  // failures are logged (the document then has no replica until its next change).
  void SyncReplica(storage::DocumentId id, const Target& owner, const Caller& caller);
  // Deletes the replicas of `id` on every live worker and forgets its placement.
  void DropDocument(storage::DocumentId id, const Caller& caller);

  // Membership changed (MembershipWatcher's listener): when a worker left, a background
  // sweep gives every document whose replica holder it was a replica on its new holder
  // (RepairReplicas), so that losing the owner later does not lose the document.
  void OnMembershipChange(const std::vector<WorkerInfo>& workers);
  // One sweep over every tenant's documents on every live worker: SyncReplica for each
  // document the worker owns. Returns how many documents it checked.
  int64_t RepairReplicas();
  int64_t repairs_done() const { return repairs_done_.load(); }

 private:
  absl::StatusOr<Target> Find(storage::DocumentId id, const grpc::ServerContext& server,
                              const Caller& caller, bool wait_ready, bool* restored);
  absl::Status CopyReplica(storage::DocumentId id, const Target& owner, const Target& replica,
                           const Caller& caller);
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);
  std::optional<Target> Cached(storage::DocumentId id);

  MembershipWatcher* membership_;
  TenantRegistry* tenants_;
  const RouterOptions options_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;  // by address
  std::map<storage::DocumentId, std::string> placement_;            // doc -> worker id
  std::mt19937_64 random_{std::random_device{}()};

  // Replica repair (OnMembershipChange): the worker ids seen last, and the sweep thread.
  void RepairLoop();
  std::mutex repair_mu_;
  std::condition_variable repair_cv_;
  std::vector<std::string> known_workers_;  // guarded by repair_mu_
  bool repair_wanted_ = false, stopping_ = false;
  std::atomic<int64_t> repairs_done_{0};
  std::thread repair_thread_;
};

}  // namespace tome::services::cluster
