#include "cluster/router.h"

#include <glog/logging.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cluster/peer_auth.h"
#include "cluster/rendezvous.h"
#include "status_util.h"
#include "tome/base/status_macros.h"
#include "tome/internal/v1/worker.grpc.pb.h"
#include "tome/v1/documents.grpc.pb.h"

namespace tome::services::cluster {
namespace {

using internal::v1::EnsureDocumentResponse;

constexpr int64_t kReplicaChunkBytes = 1 << 20;
constexpr size_t kMaxCachedPlacements = 1 << 20;

bool Retryable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::NOT_FOUND ||
         s.error_code() == grpc::StatusCode::UNAVAILABLE;
}

}  // namespace

absl::StatusOr<Caller> Router::Authenticate(const grpc::ServerContext& context, bool admin) {
  const auto& metadata = context.client_metadata();
  absl::string_view secret;
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    absl::string_view value(it->second.data(), it->second.size());
    if (absl::StartsWithIgnoreCase(value, "bearer ")) {
      secret = absl::StripAsciiWhitespace(value.substr(7));
    }
  }
  Caller caller;
  TOME_ASSIGN_OR_RETURN(caller.principal, tenants_->Authenticate(secret));
  if (admin && !caller.principal.admin) {
    return absl::PermissionDeniedError("this call needs the admin key (TOME_ADMIN_KEY)");
  }
  if (!admin && caller.principal.admin) {
    return absl::PermissionDeniedError(
        "the admin key manages tenants; use a tenant's API key for documents and questions");
  }
  if (!caller.principal.admin) {
    TOME_ASSIGN_OR_RETURN(caller.tenant, tenants_->GetTenant(caller.principal.tenant));
  }
  return caller;
}

std::unique_ptr<grpc::ClientContext> Router::Forward(const grpc::ServerContext& server,
                                                     const Caller& caller) {
  auto context = grpc::ClientContext::FromServerContext(server);
  AddPeerMetadata(context.get(), options_.peer_token, caller.principal,
                  caller.tenant ? &*caller.tenant : nullptr);
  return context;
}

Router::Router(MembershipWatcher* membership, TenantRegistry* tenants, RouterOptions options)
    : membership_(membership), tenants_(tenants), options_(std::move(options)) {
  repair_thread_ = std::thread([this] { RepairLoop(); });
}

Router::~Router() { StopRepairs(); }

void Router::StopRepairs() {
  {
    std::lock_guard<std::mutex> lock(repair_mu_);
    stopping_ = true;
  }
  repair_cv_.notify_all();
  if (repair_thread_.joinable()) repair_thread_.join();
}

void Router::OnMembershipChange(const std::vector<WorkerInfo>& workers) {
  std::vector<std::string> ids;
  for (const WorkerInfo& w : workers) ids.push_back(w.id);
  std::sort(ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(repair_mu_);
  // Only a departure moves replica holders to workers that lack the text (a new worker
  // takes over only documents it ranks first for, whose old owner becomes their holder).
  const bool someone_left = !std::includes(ids.begin(), ids.end(), known_workers_.begin(),
                                           known_workers_.end());
  known_workers_ = std::move(ids);
  if (someone_left) {
    repair_wanted_ = true;
    repair_cv_.notify_all();
  }
}

void Router::RepairLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(repair_mu_);
      repair_cv_.wait(lock, [&] { return repair_wanted_ || stopping_; });
      if (stopping_) return;
      repair_wanted_ = false;
    }
    const int64_t checked = RepairReplicas();
    LOG(INFO) << "replica repair after a worker left: checked " << checked << " documents";
  }
}

int64_t Router::RepairReplicas() {
  auto tenants = tenants_->ListTenants();
  if (!tenants.ok()) {
    LOG(WARNING) << "replica repair: cannot list tenants: " << tenants.status();
    return 0;
  }
  const std::vector<Target> workers = LiveWorkers();
  std::vector<std::string> live;
  for (const Target& t : workers) live.push_back(t.worker_id);
  int64_t checked = 0;
  for (const TenantInfo& tenant : *tenants) {
    Caller caller;
    caller.principal.tenant = tenant.id;
    caller.tenant = tenant;
    for (const Target& worker : workers) {
      v1::ListDocumentsRequest request;
      request.set_page_size(1000);
      for (;;) {
        {
          std::lock_guard<std::mutex> lock(repair_mu_);
          if (stopping_) return checked;
        }
        v1::ListDocumentsResponse page;
        grpc::Status s = v1::DocumentService::NewStub(worker.channel)
                             ->ListDocuments(Internal(caller).get(), request, &page);
        if (!s.ok()) {
          LOG(WARNING) << "replica repair: listing tenant " << tenant.id << " on "
                       << worker.worker_id << ": " << s.error_message();
          break;
        }
        for (const v1::Document& d : page.documents()) {
          uint64_t id = 0;
          if (!absl::SimpleAtoi(d.id(), &id)) continue;
          const std::vector<std::string> ranked = RankWorkers(id, live);
          if (ranked.empty() || ranked[0] != worker.worker_id) continue;  // not its owner
          SyncReplica(id, worker, caller);
          ++checked;
        }
        if (page.next_page_token().empty()) break;
        request.set_page_token(page.next_page_token());
      }
    }
  }
  repairs_done_ += 1;
  return checked;
}

std::unique_ptr<grpc::ClientContext> Router::Internal(const Caller& caller,
                                                      std::optional<absl::Time> deadline) {
  auto context = std::make_unique<grpc::ClientContext>();
  absl::Time until = absl::Now() + options_.internal_timeout;
  if (deadline && *deadline > until) until = *deadline;
  context->set_deadline(absl::ToChronoTime(until));
  AddPeerMetadata(context.get(), options_.peer_token, caller.principal,
                  caller.tenant ? &*caller.tenant : nullptr);
  return context;
}

std::shared_ptr<grpc::Channel> Router::ChannelTo(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = channels_.find(address);
  if (it != channels_.end()) return it->second;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  auto channel = NewChannel(address, options_.peer_tls, args);
  if (!channel.ok()) {  // the options were checked at startup; this is unexpected
    LOG(ERROR) << "cannot make a channel to " << address << ": " << channel.status();
    return nullptr;
  }
  channels_[address] = *channel;
  return *channel;
}

std::vector<Target> Router::LiveWorkers() {
  std::vector<Target> out;
  for (const WorkerInfo& w : membership_->workers()) {
    if (auto channel = ChannelTo(w.address)) out.push_back({w.id, channel});
  }
  return out;
}

storage::DocumentId Router::NewDocumentId() {
  std::lock_guard<std::mutex> lock(mu_);
  std::uniform_int_distribution<uint64_t> dist(storage::kMinChosenDocumentId,
                                               (uint64_t{1} << 53) - 1);
  return dist(random_);
}

absl::StatusOr<Target> Router::PlaceNew(storage::DocumentId id) {
  std::vector<Target> live = LiveWorkers();
  if (live.empty()) {
    return absl::UnavailableError(
        "no live workers are registered in etcd; start workers (tomed --role=worker) and retry");
  }
  std::vector<std::string> ids;
  for (const Target& t : live) ids.push_back(t.worker_id);
  const std::string owner = RankWorkers(id, ids)[0];
  for (const Target& t : live) {
    if (t.worker_id == owner) return t;
  }
  return absl::InternalError("the ranked worker vanished");
}

std::optional<Target> Router::Cached(storage::DocumentId id) {
  std::string worker;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = placement_.find(id);
    if (it == placement_.end()) return std::nullopt;
    worker = it->second;
  }
  for (Target& t : LiveWorkers()) {
    if (t.worker_id == worker) return t;
  }
  return std::nullopt;
}

absl::StatusOr<Target> Router::Find(storage::DocumentId id, const grpc::ServerContext& server,
                                    const Caller& caller, bool wait_ready, bool* restored) {
  *restored = false;
  std::vector<Target> live = LiveWorkers();
  if (live.empty()) {
    return absl::UnavailableError(
        "no live workers are registered in etcd; start workers (tomed --role=worker) and retry");
  }
  std::vector<std::string> ids;
  for (const Target& t : live) ids.push_back(t.worker_id);
  absl::Status unreachable;
  for (const std::string& worker : RankWorkers(id, ids)) {
    const Target& target = *std::find_if(live.begin(), live.end(),
                                         [&](const Target& t) { return t.worker_id == worker; });
    internal::v1::EnsureDocumentRequest request;
    request.set_document_id(absl::StrCat(id));
    request.set_wait_ready(wait_ready);
    internal::v1::EnsureDocumentResponse response;
    std::optional<absl::Time> deadline;
    if (server.deadline() != std::chrono::system_clock::time_point::max()) {
      deadline = absl::FromChrono(server.deadline());
    } else if (wait_ready) {
      deadline = absl::Now() + absl::Hours(1);  // a take-over's prefill may take long
    }
    auto context = Internal(caller, deadline);
    grpc::Status s = internal::v1::WorkerService::NewStub(target.channel)
                         ->EnsureDocument(context.get(), request, &response);
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      unreachable = FromGrpcStatus(s);
      continue;  // a worker that died before its lease expired
    }
    if (!s.ok()) return FromGrpcStatus(s);
    if (response.state() == EnsureDocumentResponse::ABSENT) continue;
    *restored = response.state() == EnsureDocumentResponse::RESTORED;
    if (*restored) {
      LOG(INFO) << "document " << id << " taken over by worker " << worker;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (placement_.size() >= kMaxCachedPlacements) placement_.clear();
    placement_[id] = worker;
    return target;
  }
  if (!unreachable.ok()) {
    return absl::UnavailableError(absl::StrCat("document ", id,
                                               " may be on a worker that cannot be reached (",
                                               unreachable.message(), "); retry shortly"));
  }
  return absl::NotFoundError(absl::StrCat("document ", id, " not found"));
}

grpc::Status Router::OnDocument(
    storage::DocumentId id, const grpc::ServerContext& server, const Caller& caller,
    bool wait_ready, bool use_cache,
    const std::function<grpc::Status(const Target&, grpc::ClientContext*)>& call,
    const std::function<bool()>& may_retry) {
  if (use_cache) {
    if (std::optional<Target> cached = Cached(id)) {
      grpc::Status s = call(*cached, Forward(server, caller).get());
      if (!Retryable(s) || !may_retry()) return s;
      std::lock_guard<std::mutex> lock(mu_);
      placement_.erase(id);
    }
  }
  bool restored = false;
  auto target = Find(id, server, caller, wait_ready, &restored);
  if (!target.ok()) return ToGrpcStatus(target.status());
  if (restored) SyncReplica(id, *target, caller);  // the new owner needs a new replica
  return call(*target, Forward(server, caller).get());
}

absl::Status Router::CopyReplica(storage::DocumentId id, const Target& owner, const Target& replica,
                                 const Caller& caller) {
  auto from = internal::v1::WorkerService::NewStub(owner.channel);
  auto to = internal::v1::WorkerService::NewStub(replica.channel);
  internal::v1::GetReplicaRequest get;
  get.set_document_id(absl::StrCat(id));
  internal::v1::ReplicaState state;
  grpc::Status s = to->GetReplica(Internal(caller).get(), get, &state);
  if (!s.ok()) return FromGrpcStatus(s);
  int64_t offset = state.present() ? state.text_bytes() : 0;
  bool restarted = false;
  for (;;) {
    internal::v1::ExportTextRequest request;
    request.set_document_id(absl::StrCat(id));
    request.set_offset(offset);
    request.set_max_bytes(kReplicaChunkBytes);
    internal::v1::ExportTextResponse exported;
    s = from->ExportText(Internal(caller).get(), request, &exported);
    if (!s.ok()) return FromGrpcStatus(s);
    if (offset > exported.meta().text_bytes()) {  // a replica of other text: start over
      if (restarted) return absl::AbortedError("the document changed while copying");
      offset = 0;
      restarted = true;
      continue;
    }
    internal::v1::PutReplicaRequest put;
    *put.mutable_meta() = exported.meta();
    put.set_offset(offset);
    put.set_text(exported.text());
    s = to->PutReplica(Internal(caller).get(), put, &state);
    if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION && !restarted) {
      offset = 0;
      restarted = true;
      continue;
    }
    if (!s.ok()) return FromGrpcStatus(s);
    offset += static_cast<int64_t>(exported.text().size());
    if (offset >= exported.meta().text_bytes()) return absl::OkStatus();
    if (exported.text().empty()) return absl::DataLossError("the owner exported no text");
  }
}

void Router::SyncReplica(storage::DocumentId id, const Target& owner, const Caller& caller) {
  std::vector<Target> live = LiveWorkers();
  std::vector<std::string> ids;
  for (const Target& t : live) ids.push_back(t.worker_id);
  for (const std::string& worker : RankWorkers(id, ids)) {
    if (worker == owner.worker_id) continue;
    const Target& replica = *std::find_if(live.begin(), live.end(),
                                          [&](const Target& t) { return t.worker_id == worker; });
    if (absl::Status s = CopyReplica(id, owner, replica, caller); !s.ok()) {
      LOG(WARNING) << "replicating document " << id << " to worker " << worker << ": " << s;
    }
    return;
  }
}

void Router::DropDocument(storage::DocumentId id, const Caller& caller) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    placement_.erase(id);
  }
  for (const Target& t : LiveWorkers()) {
    internal::v1::DeleteReplicaRequest request;
    request.set_document_id(absl::StrCat(id));
    internal::v1::ReplicaState state;
    grpc::Status s = internal::v1::WorkerService::NewStub(t.channel)->DeleteReplica(
        Internal(caller).get(), request, &state);
    if (!s.ok()) {
      LOG(WARNING) << "deleting the replica of document " << id << " on " << t.worker_id << ": "
                   << s.error_message();
    }
  }
}

}  // namespace tome::services::cluster
