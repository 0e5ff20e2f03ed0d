#include "cluster/etcd_client.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "etcd/v3/etcd_subset.grpc.pb.h"

namespace tome::services::cluster {
namespace {

absl::Status EtcdError(const grpc::Status& status, const std::string& endpoint,
                       absl::string_view what) {
  const std::string message = absl::StrCat(
      "etcd at ", endpoint, ": ", what, " failed: ", status.error_message(),
      status.error_code() == grpc::StatusCode::UNAVAILABLE ? " (is etcd running? check --etcd)"
                                                           : "");
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
      status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(message);
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), message);
}

EtcdKeyValue FromProto(const etcdserverpb::KeyValue& kv) {
  return EtcdKeyValue{kv.key(), kv.value(), kv.mod_revision(), kv.lease()};
}

}  // namespace

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct EtcdClient::Stubs {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

EtcdClient::EtcdClient(const std::string& endpoint, absl::Duration call_timeout)
    : EtcdClient(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()), endpoint,
                 call_timeout) {}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Connect(const std::string& endpoint,
                                                                const ClientTlsOptions& tls,
                                                                absl::Duration call_timeout) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = NewChannel(endpoint, tls);
  if (!channel.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd TLS (--etcd_tls_*): ", channel.status().message()));
  }
  return std::unique_ptr<EtcdClient>(new EtcdClient(*channel, endpoint, call_timeout));
}

EtcdClient::EtcdClient(std::shared_ptr<grpc::Channel> channel, const std::string& endpoint,
                       absl::Duration call_timeout)
    : endpoint_(endpoint), call_timeout_(call_timeout), stubs_(std::make_unique<Stubs>()) {
  stubs_->channel = std::move(channel);
  stubs_->kv = etcdserverpb::KV::NewStub(stubs_->channel);
  stubs_->lease = etcdserverpb::Lease::NewStub(stubs_->channel);
  stubs_->watch = etcdserverpb::Watch::NewStub(stubs_->channel);
}

EtcdClient::~EtcdClient() { CancelWatches(); }

std::unique_ptr<grpc::ClientContext> EtcdClient::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + call_timeout_));
  return context;
}

absl::StatusOr<EtcdRange> EtcdClient::GetPrefix(const std::string& prefix) {
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixRangeEnd(prefix));
  etcdserverpb::RangeResponse response;
  auto context = NewContext();
  grpc::Status status = stubs_->kv->Range(context.get(), request, &response);
  if (!status.ok()) return EtcdError(status, endpoint_, absl::StrCat("reading ", prefix));
  EtcdRange out;
  out.revision = response.header().revision();
  for (const auto& kv : response.kvs()) out.kvs.push_back(FromProto(kv));
  return out;
}

absl::StatusOr<EtcdKeyValue> EtcdClient::Get(const std::string& key) {
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse response;
  auto context = NewContext();
  grpc::Status status = stubs_->kv->Range(context.get(), request, &response);
  if (!status.ok()) return EtcdError(status, endpoint_, absl::StrCat("reading ", key));
  if (response.kvs_size() == 0) return absl::NotFoundError(absl::StrCat(key, " not found"));
  return FromProto(response.kvs(0));
}

absl::StatusOr<int64_t> EtcdClient::Put(const std::string& key, const std::string& value,
                                        int64_t lease) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  etcdserverpb::PutResponse response;
  auto context = NewContext();
  grpc::Status status = stubs_->kv->Put(context.get(), request, &response);
  if (!status.ok()) return EtcdError(status, endpoint_, absl::StrCat("writing ", key));
  return response.header().revision();
}

absl::Status EtcdClient::Delete(const std::string& key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  etcdserverpb::DeleteRangeResponse response;
  auto context = NewContext();
  grpc::Status status = stubs_->kv->DeleteRange(context.get(), request, &response);
  if (!status.ok()) return EtcdError(status, endpoint_, absl::StrCat("deleting ", key));
  return absl::OkStatus();
}

absl::StatusOr<bool> EtcdClient::CompareAndPut(const std::string& key,
                                               int64_t expected_mod_revision,
                                               const std::string& value) {
  etcdserverpb::TxnRequest request;
  etcdserverpb::Compare* compare = request.add_compare();
  compare->set_key(key);
  compare->set_result(etcdserverpb::Compare::EQUAL);
  if (expected_mod_revision == 0) {
    compare->set_target(etcdserverpb::Compare::VERSION);
    compare->set_version(0);  // absent
  } else {
    compare->set_target(etcdserverpb::Compare::MOD);
    compare->set_mod_revision(expected_mod_revision);
  }
  etcdserverpb::PutRequest* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  etcdserverpb::TxnResponse response;
  auto context = NewContext();
  grpc::Status status = stubs_->kv->Txn(context.get(), request, &response);
  if (!status.ok()) return EtcdError(status, endpoint_, absl::StrCat("updating ", key));
  return response.succeeded();
}

absl::StatusOr<int64_t> EtcdClient::GrantLease(int64_t ttl_seconds) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  etcdserverpb::LeaseGrantResponse response;
  auto context = NewContext();
  grpc::Status status = stubs_->lease->LeaseGrant(context.get(), request, &response);
  if (!status.ok()) return EtcdError(status, endpoint_, "granting a lease");
  if (!response.error().empty()) {
    return absl::UnavailableError(absl::StrCat("etcd refused a lease: ", response.error()));
  }
  return response.id();
}

absl::Status EtcdClient::RevokeLease(int64_t lease) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseRevokeResponse response;
  auto context = NewContext();
  grpc::Status status = stubs_->lease->LeaseRevoke(context.get(), request, &response);
  if (!status.ok()) return EtcdError(status, endpoint_, "revoking a lease");
  return absl::OkStatus();
}

absl::StatusOr<int64_t> EtcdClient::KeepAlive(int64_t lease) {
  auto context = NewContext();
  auto stream = stubs_->lease->LeaseKeepAlive(context.get());
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseKeepAliveResponse response;
  const bool exchanged = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  if (!status.ok()) return EtcdError(status, endpoint_, "refreshing a lease");
  if (!exchanged) return absl::UnavailableError("etcd closed the lease keep-alive stream");
  return response.ttl();
}

absl::Status EtcdClient::Watch(
    const std::string& prefix, int64_t start_revision,
    const std::function<void(const std::vector<EtcdEvent>&)>& on_events) {
  grpc::ClientContext context;  // no deadline: a watch lasts
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return absl::CancelledError("the etcd client is closing");
    watches_.push_back(&context);
  }
  struct Unregister {
    EtcdClient* self;
    grpc::ClientContext* context;
    ~Unregister() {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->watches_.erase(std::remove(self->watches_.begin(), self->watches_.end(), context),
                           self->watches_.end());
    }
  } unregister{this, &context};

  auto stream = stubs_->watch->Watch(&context);
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(prefix);
  create->set_range_end(PrefixRangeEnd(prefix));
  create->set_start_revision(start_revision);
  absl::Status ended = absl::UnavailableError("the watch stream ended");
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    while (stream->Read(&response)) {
      if (response.canceled()) {
        ended = response.compact_revision() > 0
                    ? absl::OutOfRangeError(
                          absl::StrCat("etcd compacted past revision ", start_revision))
                    : absl::AbortedError(
                          absl::StrCat("etcd cancelled the watch: ", response.cancel_reason()));
        context.TryCancel();
        break;
      }
      if (response.events_size() == 0) continue;
      std::vector<EtcdEvent> events;
      events.reserve(response.events_size());
      for (const auto& e : response.events()) {
        EtcdEvent event;
        event.type = e.type() == etcdserverpb::Event::DELETE ? EtcdEvent::Type::kDelete
                                                             : EtcdEvent::Type::kPut;
        event.kv = FromProto(e.kv());
        events.push_back(std::move(event));
      }
      on_events(events);
    }
  }
  grpc::Status status = stream->Finish();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return absl::CancelledError("the etcd client is closing");
  }
  if (!ended.ok() && !absl::IsUnavailable(ended)) return ended;
  if (!status.ok()) return EtcdError(status, endpoint_, absl::StrCat("watching ", prefix));
  return ended;
}

void EtcdClient::CancelWatches() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  for (grpc::ClientContext* context : watches_) context->TryCancel();
}

}  // namespace tome::services::cluster
