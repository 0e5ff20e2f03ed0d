#include "tome/services/server.h"

#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tome/services/bearer_interceptor.h"
#include "tome/services/tls.h"
#include "admin_service.h"
#include "cluster/worker_service.h"
#include "metrics/http_exporter.h"
#include "metrics/metrics.h"
#include "metrics/process_memory.h"
#include "metrics/rpc_interceptor.h"
#include "document_service.h"
#include "query_service.h"
#include "session_service.h"
#include "tome/base/status_macros.h"
#include "tome_core.h"

namespace tome::services {

namespace {

// Gauges read from the core at every scrape.
void RegisterGauges(TomeCore* core, Metrics* metrics) {
  using Samples = std::vector<std::pair<Metrics::Labels, double>>;
  metrics->Help("tome_requests_total", "RPCs by method and status code", "counter");
  metrics->Help("tome_request_seconds", "RPC latency in seconds", "histogram");
  AddProcessMemoryGauges(*metrics);
  metrics->Gauge("tome_scheduler_queue_depth", "work waiting for the engine", [core] {
    const SchedulerStats s = core->scheduler().stats();
    return Samples{{{{"queue", "decode"}}, double(s.queued_decodes)},
                   {{{"queue", "prefill"}}, double(s.queued_prefills)}};
  });
  metrics->Gauge("tome_decode_steps", "decode steps run (a counter; rate() gives tokens/s)",
                 [core] { return Samples{{{}, double(core->scheduler().stats().decode_steps)}}; });
  metrics->Gauge("tome_decode_batches", "batched decode passes run", [core] {
    return Samples{{{}, double(core->scheduler().stats().decode_batches)}};
  });
  metrics->Gauge("tome_prefill_tokens", "tokens prefilled (ingestion, questions, rebuilds)",
                 [core] { return Samples{{{}, double(core->scheduler().stats().prefill_tokens)}}; });
  metrics->Gauge("tome_generated_tokens", "answer tokens generated",
                 [core] { return Samples{{{}, double(core->generated_tokens())}}; });
  metrics->Gauge("tome_ingested_tokens", "document tokens ingested since start",
                 [core] { return Samples{{{}, double(core->ingestion().tokens_prefilled())}}; });
  metrics->Gauge("tome_state_cache_hits", "document states found in memory", [core] {
    return Samples{{{{"result", "hit"}}, double(core->state_cache().hits())},
                   {{{"result", "miss"}}, double(core->state_cache().misses())}};
  });
  metrics->Gauge("tome_state_cache_bytes", "bytes of document state held in memory",
                 [core] { return Samples{{{}, double(core->state_cache().bytes())}}; });
  metrics->Gauge("tome_block_cache_reads", "KV blocks of on-demand documents, by where found",
                 [core] {
    const engine::BlockCacheStats s = core->block_cache_stats();
    return Samples{{{{"tier", "device"}}, double(s.device_hits)},
                   {{{"tier", "host"}}, double(s.host_hits)},
                   {{{"tier", "store"}}, double(s.source_reads)}};
  });
  metrics->Gauge("tome_block_cache_bytes", "bytes of KV blocks cached, by tier", [core] {
    const engine::BlockCacheStats s = core->block_cache_stats();
    return Samples{{{{"tier", "device"}}, double(s.device_bytes)},
                   {{{"tier", "host"}}, double(s.host_bytes)}};
  });
  metrics->Gauge("tome_admission_bytes",
                 "engine memory reserved by running questions (in_use) and their limit",
                 [core] {
    const MemoryAdmission& a = core->admission();
    return Samples{{{{"kind", "in_use"}}, double(a.in_use_bytes())},
                   {{{"kind", "limit"}}, double(a.budget_bytes())}};
  });
  metrics->Gauge("tome_ingest_memory_bytes",
                 "engine memory held by documents being ingested (in_use) and its limit",
                 [core] {
    const MemoryAdmission& a = core->ingest_admission();
    return Samples{{{{"kind", "in_use"}}, double(a.in_use_bytes())},
                   {{{"kind", "limit"}}, double(a.budget_bytes())}};
  });
  metrics->Gauge("tome_admission_waiting", "questions waiting for engine memory",
                 [core] { return Samples{{{}, double(core->admission().waiting())}}; });
  metrics->Gauge("tome_admission_waited", "questions admitted after waiting for engine memory",
                 [core] { return Samples{{{}, double(core->admission().waited())}}; });
  metrics->Gauge("tome_admission_refused",
                 "questions refused for engine memory since start (too large or timed out)",
                 [core] { return Samples{{{}, double(core->admission().refused())}}; });
  metrics->Gauge("tome_tenant_stored_bytes", "estimated bytes each tenant stores", [core] {
    Samples out;
    if (auto tenants = core->tenants().ListTenants(); tenants.ok()) {
      for (const TenantInfo& t : *tenants) {
        if (auto bytes = core->TenantStoredBytes(t.id); bytes.ok()) {
          out.push_back({{{"tenant", absl::StrCat(t.id)}}, double(*bytes)});
        }
      }
    }
    return out;
  });
}

}  // namespace

struct TomeServer::Impl {
  Metrics metrics;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  std::unique_ptr<TomeCore> core;
  std::unique_ptr<DocumentServiceImpl> documents;
  std::unique_ptr<QueryServiceImpl> queries;
  std::unique_ptr<SessionServiceImpl> sessions;
  std::unique_ptr<AdminServiceImpl> admin;
  std::unique_ptr<cluster::WorkerServiceImpl> worker;  // cluster workers only
  std::unique_ptr<grpc::Server> server;
  bool shut_down = false;
};

TomeServer::TomeServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TomeServer::~TomeServer() { Shutdown(absl::Seconds(1)); }

absl::StatusOr<std::unique_ptr<TomeServer>> TomeServer::Start(const ServerOptions& options) {
  // Credentials first: a bad certificate fails before the model loads.
  TOME_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                        MakeServerCredentials({options.tls_cert_file, options.tls_key_file,
                                               options.tls_client_ca_file}));
  auto impl = std::make_unique<Impl>();
  CoreOptions core_options;
  core_options.model_dir = options.model_dir;
  core_options.data_dir = options.data_dir;
  core_options.num_threads = options.num_threads;
  if (options.device == "cuda") {
    core_options.device = engine::DeviceKind::kCuda;
  } else if (options.device != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown device \"", options.device, "\": use cpu or cuda"));
  }
  core_options.cuda_device = options.cuda_device;
  core_options.tensor_parallel = options.tensor_parallel;
  core_options.dense_mode = options.dense_mode;
  core_options.checkpoint_tokens = options.checkpoint_tokens;
  core_options.max_document_bytes = options.max_document_bytes;
  core_options.sync_writes = options.sync_writes;
  core_options.state_cache_bytes = options.state_cache_bytes;
  core_options.session_states = static_cast<size_t>(options.session_states);
  core_options.resident_kv_limit_bytes = options.resident_kv_limit_bytes;
  core_options.block_cache_bytes = options.block_cache_bytes;
  core_options.host_block_cache_bytes = options.host_block_cache_bytes;
  core_options.store_read_threads = options.store_read_threads;
  core_options.fetch_threads = options.fetch_threads;
  core_options.ask_memory_bytes = options.ask_memory_bytes;
  core_options.admission_wait = absl::Milliseconds(options.admission_wait_ms);
  core_options.ingest_memory_bytes = options.ingest_memory_bytes;
  core_options.peer_token = options.peer_token;
  TOME_ASSIGN_OR_RETURN(impl->core, TomeCore::Create(core_options));
  impl->documents = std::make_unique<DocumentServiceImpl>(impl->core.get());
  impl->queries = std::make_unique<QueryServiceImpl>(impl->core.get());
  impl->sessions = std::make_unique<SessionServiceImpl>(impl->core.get());
  impl->admin = std::make_unique<AdminServiceImpl>(impl->core.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address, credentials, &port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.RegisterService(impl->documents.get());
  builder.RegisterService(impl->queries.get());
  builder.RegisterService(impl->sessions.get());
  builder.RegisterService(impl->admin.get());
  if (!options.peer_token.empty()) {
    impl->worker = std::make_unique<cluster::WorkerServiceImpl>(impl->core.get());
    builder.RegisterService(impl->worker.get());
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(NewRpcMetricsInterceptor(&impl->metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  impl->server = builder.BuildAndStart();
  if (!impl->server || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address, " (address in use?)"));
  }
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  int metrics_port = 0;
  if (!options.metrics_address.empty()) {
    RegisterGauges(impl->core.get(), &impl->metrics);
    TOME_ASSIGN_OR_RETURN(impl->metrics_http,
                          MetricsHttpServer::Start(options.metrics_address, &impl->metrics));
    metrics_port = impl->metrics_http->port();
    LOG(INFO) << "metrics on http://" << options.metrics_address.substr(
                     0, options.metrics_address.rfind(':'))
              << ":" << metrics_port << "/metrics";
  }
  LOG(INFO) << "tomed serving on port " << port
            << (options.tls_cert_file.empty()            ? " (plaintext)"
                : options.tls_client_ca_file.empty() ? " (TLS)"
                                                     : " (mutual TLS)");
  std::unique_ptr<TomeServer> server(new TomeServer(std::move(impl)));
  server->port_ = port;
  server->data_dir_ = options.data_dir;
  server->metrics_port_ = metrics_port;
  return server;
}

std::shared_ptr<grpc::Channel> TomeServer::InProcessChannel(const std::string& api_key) {
  if (api_key.empty()) return impl_->server->InProcessChannel(grpc::ChannelArguments());
  return impl_->server->experimental().InProcessChannelWithInterceptors(
      grpc::ChannelArguments(), BearerInterceptors(api_key));
}

std::string TomeServer::credentials_path() const {
  return (std::filesystem::path(data_dir_) / "bootstrap-credentials").string();
}

void TomeServer::Shutdown(absl::Duration grace) {
  if (!impl_ || impl_->shut_down) return;
  impl_->shut_down = true;
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  if (impl_->worker) impl_->worker->Drain();  // take-overs use the core
  impl_->metrics_http.reset();  // its gauges read the core
  impl_->core.reset();          // stops ingestion, closes the store
}

void TomeServer::Wait() { impl_->server->Wait(); }

TomeCore* TomeServer::core() { return impl_ ? impl_->core.get() : nullptr; }

}  // namespace tome::services
