// tomed: the Tome server.
//
//   tomed --data_dir=/var/lib/tome [--model=DIR] [--listen=127.0.0.1:7070]
#include <glog/logging.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tome/engine/engine.h"
#include "tome/services/server.h"
#include "cluster/cluster_main.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070", "address:port to serve gRPC on (port 0 = any)");
ABSL_FLAG(std::string, data_dir, "tome-data", "directory of the context store (created if missing)");
ABSL_FLAG(std::string, model, TOME_DEFAULT_MODEL_DIR,
          "model directory (config.json, safetensors, tokenizer); default: the embedded model");
ABSL_FLAG(int, threads, 0, "CPU threads for the engine (0 = all cores)");
ABSL_FLAG(int64_t, checkpoint_tokens, 0,
          "commit a durable ingestion checkpoint every N tokens (0 = the default policy: "
          "Lightning checkpoints cost at most 10% of the KV bytes they cover)");
ABSL_FLAG(std::string, dense_mode, "always_sparse",
          "sparse layers: always_sparse (official server) or hf (dense below dense_len)");
ABSL_FLAG(int64_t, max_document_mb, 1024, "largest text accepted by one AppendText call, MiB");
ABSL_FLAG(int64_t, max_message_mb, 4,
          "largest gRPC message accepted, MiB (a document streams in pieces of at most this)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "address:port of the Prometheus /metrics endpoint (empty disables it)");
ABSL_FLAG(int64_t, state_cache_mb, 2048,
          "memory for document states kept between questions, MiB (a cache over the store)");
ABSL_FLAG(int32_t, session_states, 64, "sessions whose state is kept in memory (LRU)");
ABSL_FLAG(int64_t, resident_kv_limit_mb, 4096,
          "document states with more KV than this (MiB) are loaded on demand: KV blocks stay "
          "in the store until a query selects them");
ABSL_FLAG(int64_t, block_cache_mb, 1024,
          "engine memory for KV blocks of on-demand documents, MiB (on each GPU with "
          "--tensor_parallel)");
ABSL_FLAG(int64_t, host_block_cache_mb, 2048,
          "host memory caching KV blocks read from the store for on-demand documents, MiB");
ABSL_FLAG(int32_t, store_read_threads, 8,
          "threads reading KV blocks from the store in parallel for on-demand documents "
          "(0..64; more requests in flight suit fast disks)");
ABSL_FLAG(int32_t, fetch_threads, 3,
          "helper threads running store batches in parallel: a question's KV block fetches "
          "and the opening of a stored state (0..64; each batch uses --store_read_threads)");
ABSL_FLAG(std::string, device, "cpu",
          "where the engine runs: cpu, or cuda (a build with CUDA; weights in bf16 on the GPU)");
ABSL_FLAG(int32_t, cuda_device, 0, "first CUDA device the engine uses (--device=cuda)");
ABSL_FLAG(int32_t, tensor_parallel, 1,
          "split the model over this many ranks: GPUs cuda_device.. with NCCL (on the CPU, "
          "in-process ranks); each rank fetches its own KV groups' blocks on demand");
ABSL_FLAG(int64_t, ask_memory_mb, 0,
          "engine memory (GPU memory on CUDA) all running questions may reserve together, "
          "MiB: the states they open plus their prompt and answer tokens; past it questions "
          "queue, and one larger than all of it is refused (0 = no limit)");
ABSL_FLAG(int64_t, admission_wait_ms, 30000,
          "how long a question waits for engine memory before RESOURCE_EXHAUSTED, ms");
ABSL_FLAG(int64_t, ingest_memory_mb, 0,
          "engine memory the states of documents being ingested may hold together, MiB (each "
          "holds its whole state until ingested); past it ingestion takes turns, and a "
          "document whose state is larger than all of it fails with the reason (0 = no limit)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: serve gRPC over TLS (empty = plaintext)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: require client certificates signed by them (mutual TLS)");
ABSL_FLAG(std::string, port_file, "", "write the bound port to this file once serving (tests)");

int main(int argc, char** argv) {
  tome::engine::PrepareCpuProcess(argv);
  absl::SetProgramUsageMessage("Tome server: long-context question answering over stored "
                               "document state.\n  tomed --data_dir=DIR [--model=DIR]");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);

  tome::services::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.device = absl::GetFlag(FLAGS_device);
  options.cuda_device = absl::GetFlag(FLAGS_cuda_device);
  options.tensor_parallel = absl::GetFlag(FLAGS_tensor_parallel);
  options.checkpoint_tokens = absl::GetFlag(FLAGS_checkpoint_tokens);
  const int64_t max_document_mb = absl::GetFlag(FLAGS_max_document_mb);
  const int64_t max_message_mb = absl::GetFlag(FLAGS_max_message_mb);
  if (max_document_mb <= 0 || max_document_mb > (int64_t{1} << 20) || max_message_mb <= 0 ||
      max_message_mb > 1024) {
    std::fprintf(stderr, "tomed: --max_document_mb must be in [1, 1048576] and "
                         "--max_message_mb in [1, 1024]\n");
    return 2;
  }
  options.max_document_bytes = max_document_mb << 20;
  options.max_message_bytes = static_cast<int>(max_message_mb << 20);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  // Clamped before shifting so that no flag value overflows; negative values are refused below.
  auto mib = [](int64_t mb) { return std::min<int64_t>(mb, int64_t{1} << 40) << 20; };
  options.state_cache_bytes = mib(absl::GetFlag(FLAGS_state_cache_mb));
  options.session_states = absl::GetFlag(FLAGS_session_states);
  options.resident_kv_limit_bytes = mib(absl::GetFlag(FLAGS_resident_kv_limit_mb));
  options.block_cache_bytes = mib(absl::GetFlag(FLAGS_block_cache_mb));
  options.host_block_cache_bytes = mib(absl::GetFlag(FLAGS_host_block_cache_mb));
  options.store_read_threads = absl::GetFlag(FLAGS_store_read_threads);
  options.fetch_threads = absl::GetFlag(FLAGS_fetch_threads);
  options.ask_memory_bytes = mib(absl::GetFlag(FLAGS_ask_memory_mb));
  options.admission_wait_ms = absl::GetFlag(FLAGS_admission_wait_ms);
  options.ingest_memory_bytes = mib(absl::GetFlag(FLAGS_ingest_memory_mb));
  const std::string mode = absl::GetFlag(FLAGS_dense_mode);
  if (mode == "hf") {
    options.dense_mode = tome::engine::DenseThresholdMode::kHf;
  } else if (mode != "always_sparse") {
    std::fprintf(stderr, "tomed: --dense_mode must be always_sparse or hf\n");
    return 2;
  }
  if (options.ask_memory_bytes < 0 || options.admission_wait_ms < 0 ||
      options.ingest_memory_bytes < 0) {
    std::fprintf(stderr,
                 "tomed: --ask_memory_mb, --ingest_memory_mb and --admission_wait_ms must not "
                 "be negative\n");
    return 2;
  }
  if (options.state_cache_bytes < 0 || options.session_states < 0) {
    std::fprintf(stderr, "tomed: --state_cache_mb and --session_states must not be negative\n");
    return 2;
  }
  if (options.resident_kv_limit_bytes < 0 || options.block_cache_bytes <= 0 ||
      options.host_block_cache_bytes < 0) {
    std::fprintf(stderr,
                 "tomed: --resident_kv_limit_mb and --host_block_cache_mb must not be negative, "
                 "--block_cache_mb must be positive\n");
    return 2;
  }
  if (options.store_read_threads < 0 || options.store_read_threads > 64) {
    std::fprintf(stderr, "tomed: --store_read_threads must be 0..64\n");
    return 2;
  }
  if (options.fetch_threads < 0 || options.fetch_threads > 64) {
    std::fprintf(stderr, "tomed: --fetch_threads must be 0..64\n");
    return 2;
  }
  if (options.checkpoint_tokens < 0) {
    std::fprintf(stderr, "tomed: --checkpoint_tokens must not be negative\n");
    return 2;
  }

  // Handle SIGINT/SIGTERM synchronously in main: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // --role=router / --role=worker (services/src/cluster); -1: this single-process server.
  if (int rc = tome::services::cluster::RunClusterRole(options, absl::GetFlag(FLAGS_port_file),
                                                       signals);
      rc >= 0) {
    return rc;
  }
  auto server = tome::services::TomeServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "tomed: %s\n", server.status().ToString().c_str());
    return 1;
  }
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fprintf(f, "%d\n", (*server)->port());
      std::fclose(f);
      std::rename(tmp.c_str(), port_file.c_str());
    }
  }
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  LOG(INFO) << "signal " << signal_number << ": shutting down";
  (*server)->Shutdown();
  return 0;
}
