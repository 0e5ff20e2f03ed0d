// ask_throughput: answer tokens per second of a tomed (in process, over gRPC) with N
// concurrent clients asking about one ingested document, against N = 1 in the same run.
//
//   ask_throughput --model=DIR --clients=1,16 --seconds=20 --max_tokens=32
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tome/engine/engine.h"
#include "tome/services/bearer_interceptor.h"
#include "tome/services/server.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"

ABSL_FLAG(std::string, model, TOME_DEFAULT_MODEL_DIR, "model directory");
ABSL_FLAG(std::string, clients, "1,16", "concurrent client counts to measure");
ABSL_FLAG(double, seconds, 20, "measurement time per client count");
ABSL_FLAG(int, max_tokens, 32, "tokens generated per answer");
ABSL_FLAG(int, document_bytes, 8000, "size of the document asked about");

int main(int argc, char** argv) {
  tome::engine::PrepareCpuProcess(argv);
  absl::ParseCommandLine(argc, argv);
  using namespace tome;
  char data_dir[] = "/tmp/ask_throughput_XXXXXX";
  if (!mkdtemp(data_dir)) return 1;
  services::ServerOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.data_dir = data_dir;
  options.listen_address = "127.0.0.1:0";
  options.sync_writes = false;
  auto server = services::TomeServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  const std::string key =
      services::ReadCredential((*server)->credentials_path(), "TOME_API_KEY");
  auto channel = (*server)->InProcessChannel(key);
  auto documents = v1::DocumentService::NewStub(channel);
  // One document, ingested before measuring.
  std::string text;
  while (static_cast<int>(text.size()) < absl::GetFlag(FLAGS_document_bytes)) {
    text += "The keeper wrote the weather in the green ledger every evening. ";
  }
  grpc::ClientContext c1;
  v1::CreateDocumentRequest create;
  create.set_name("bench");
  v1::Document doc;
  documents->CreateDocument(&c1, create, &doc);
  grpc::ClientContext c2;
  v1::AppendTextResponse appended;
  auto writer = documents->AppendText(&c2, &appended);
  v1::AppendTextRequest piece;
  piece.set_document_id(doc.id());
  piece.set_text(text);
  writer->Write(piece);
  writer->WritesDone();
  writer->Finish();
  grpc::ClientContext c3;
  v1::WatchIngestionRequest watch;
  watch.set_document_id(doc.id());
  auto reader = documents->WatchIngestion(&c3, watch);
  v1::IngestionProgress progress;
  while (reader->Read(&progress)) {
  }
  reader->Finish();

  std::printf("| clients | answers | answer tokens/s | mean answer latency ms |\n|---:|---:|---:|---:|\n");
  for (absl::string_view item : absl::StrSplit(absl::GetFlag(FLAGS_clients), ',')) {
    int clients = 0;
    if (!absl::SimpleAtoi(item, &clients) || clients <= 0) continue;
    std::atomic<int64_t> tokens{0}, answers{0};
    std::atomic<double> latency_ms{0};
    const auto end = std::chrono::steady_clock::now() +
                     std::chrono::duration<double>(absl::GetFlag(FLAGS_seconds));
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        auto queries = v1::QueryService::NewStub(channel);
        for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
          const auto start = std::chrono::steady_clock::now();
          grpc::ClientContext context;
          v1::AskRequest request;
          request.set_document_id(doc.id());
          request.set_question("question " + std::to_string(c) + "." + std::to_string(i));
          request.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
          request.set_no_citations(true);
          auto stream = queries->Ask(&context, request);
          v1::AskResponse response;
          int64_t generated = 0;
          while (stream->Read(&response)) {
            if (response.has_summary()) generated = response.summary().generated_tokens();
          }
          if (!stream->Finish().ok()) continue;
          tokens += generated;
          ++answers;
          const double ms = std::chrono::duration<double, std::milli>(
                                std::chrono::steady_clock::now() - start).count();
          latency_ms = latency_ms + ms;
        }
      });
    }
    for (auto& t : threads) t.join();
    const double seconds = absl::GetFlag(FLAGS_seconds);
    std::printf("| %d | %lld | %.1f | %.0f |\n", clients, static_cast<long long>(answers.load()),
                tokens.load() / seconds, answers ? latency_ms.load() / answers.load() : 0.0);
    std::fflush(stdout);
  }
  (*server)->Shutdown();
  return 0;
}
