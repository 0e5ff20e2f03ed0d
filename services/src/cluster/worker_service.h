// WorkerService (proto/tome/internal/v1/worker.proto) on a cluster worker: documents under
// router-chosen ids, replica text, and taking a document over from its replica. Calls must
// carry the cluster's peer token (cluster/peer_auth.h). Thread-safe.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>

#include "cluster/replica_store.h"
#include "tome/internal/v1/worker.grpc.pb.h"
#include "tome_core.h"

namespace tome::services::cluster {

class WorkerServiceImpl final : public internal::v1::WorkerService::CallbackService {
 public:
  explicit WorkerServiceImpl(TomeCore* core);

  grpc::ServerUnaryReactor* CreateDocument(grpc::CallbackServerContext* context,
                                           const internal::v1::CreateDocumentRequest* request,
                                           v1::Document* response) override;
  grpc::ServerUnaryReactor* EnsureDocument(grpc::CallbackServerContext* context,
                                           const internal::v1::EnsureDocumentRequest* request,
                                           internal::v1::EnsureDocumentResponse* response) override;
  grpc::ServerUnaryReactor* ExportText(grpc::CallbackServerContext* context,
                                       const internal::v1::ExportTextRequest* request,
                                       internal::v1::ExportTextResponse* response) override;
  grpc::ServerUnaryReactor* GetReplica(grpc::CallbackServerContext* context,
                                       const internal::v1::GetReplicaRequest* request,
                                       internal::v1::ReplicaState* response) override;
  grpc::ServerUnaryReactor* PutReplica(grpc::CallbackServerContext* context,
                                       const internal::v1::PutReplicaRequest* request,
                                       internal::v1::ReplicaState* response) override;
  grpc::ServerUnaryReactor* DeleteReplica(grpc::CallbackServerContext* context,
                                          const internal::v1::DeleteReplicaRequest* request,
                                          internal::v1::ReplicaState* response) override;
  grpc::ServerUnaryReactor* ListReplicas(grpc::CallbackServerContext* context,
                                         const internal::v1::ListReplicasRequest* request,
                                         internal::v1::ListReplicasResponse* response) override;

  // Waits for take-overs still running on their own threads (before the core goes away).
  void Drain();

  // Re-creates document `id` from its replica (see EnsureDocument). Public for tests.
  absl::StatusOr<internal::v1::EnsureDocumentResponse::State> Ensure(storage::DocumentId id);

 private:
  absl::Status Restore(storage::DocumentId id);
  // Waits until document `id` is READY or FAILED, or `context` is cancelled.
  absl::Status WaitReady(storage::DocumentId id, grpc::CallbackServerContext* context);

  TomeCore* core_;
  ReplicaStore replicas_;
  std::mutex restore_mu_;  // one take-over at a time: a second caller must see it whole
  std::mutex threads_mu_;
  std::condition_variable threads_done_;
  int threads_ = 0;  // guarded by threads_mu_
};

}  // namespace tome::services::cluster
