#include "cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"

ABSL_DECLARE_FLAG(bool, json);

namespace tome::cli {

const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::UNKNOWN: return "UNKNOWN";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND: return "NOT_FOUND";
    case grpc::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::ABORTED: return "ABORTED";
    case grpc::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::INTERNAL: return "INTERNAL";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::DATA_LOSS: return "DATA_LOSS";
    case grpc::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "ERROR";
  }
}

void PrintJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  std::printf("%s\n", out.c_str());
}

namespace {

std::string StatusName(v1::DocumentStatus status) {
  switch (status) {
    case v1::DOCUMENT_STATUS_EMPTY: return "empty";
    case v1::DOCUMENT_STATUS_INGESTING: return "ingesting";
    case v1::DOCUMENT_STATUS_READY: return "ready";
    case v1::DOCUMENT_STATUS_FAILED: return "failed";
    default: return "unknown";
  }
}

std::string Bytes(int64_t n) {
  if (n < 1024) return absl::StrFormat("%d B", n);
  if (n < (1 << 20)) return absl::StrFormat("%.1f KiB", n / 1024.0);
  if (n < (int64_t{1} << 30)) return absl::StrFormat("%.1f MiB", n / 1048576.0);
  return absl::StrFormat("%.2f GiB", n / 1073741824.0);
}

}  // namespace

void PrintDocument(const v1::Document& d) {
  if (absl::GetFlag(FLAGS_json)) return PrintJson(d);
  std::printf("document %s \"%s\"\n  status: %s%s\n  version: %lld\n  text: %s, %lld tokens\n"
              "  ingested: %lld tokens\n  stored: %s\n",
              d.id().c_str(), d.name().c_str(), StatusName(d.status()).c_str(),
              d.error().empty() ? "" : (" (" + d.error() + ")").c_str(),
              static_cast<long long>(d.version()), Bytes(d.text_bytes()).c_str(),
              static_cast<long long>(d.num_tokens()), static_cast<long long>(d.ingested_tokens()),
              Bytes(d.stored_bytes()).c_str());
}

void PrintDocumentRow(const v1::Document& d, bool header) {
  if (absl::GetFlag(FLAGS_json)) return PrintJson(d);
  if (header) std::printf("%-8s %-10s %12s %12s  %s\n", "ID", "STATUS", "TOKENS", "STORED", "NAME");
  std::printf("%-8s %-10s %12lld %12s  %s\n", d.id().c_str(), StatusName(d.status()).c_str(),
              static_cast<long long>(d.num_tokens()), Bytes(d.stored_bytes()).c_str(),
              d.name().c_str());
}

void PrintSummary(const v1::AskSummary& s) {
  std::printf("\n\n[%lld tokens, stop: %s, state from %s; document %lld tokens, %lld prefilled "
              "now; question %lld tokens; first token %.0f ms, total %.0f ms, %.1f tokens/s]\n",
              static_cast<long long>(s.generated_tokens()), s.stop_reason().c_str(),
              s.state_source().c_str(), static_cast<long long>(s.document_tokens()),
              static_cast<long long>(s.document_prefill_tokens()),
              static_cast<long long>(s.prompt_tokens()), s.timings().first_token_ms(),
              s.timings().total_ms(), s.timings().decode_tokens_per_second());
}

void ProgressBar::Update(const v1::IngestionProgress& p) {
  const int percent =
      p.num_tokens() > 0 ? static_cast<int>(100 * p.ingested_tokens() / p.num_tokens()) : 0;
  if (!interactive_ && percent == last_percent_) return;
  last_percent_ = percent;
  constexpr int kWidth = 30;
  const int filled = percent * kWidth / 100;
  std::string bar(filled, '#');
  bar.resize(kWidth, ' ');
  std::string eta = p.eta_seconds() > 0 ? absl::StrFormat(" ETA %.0fs", p.eta_seconds()) : "";
  std::fprintf(stderr, "%s[%s] %3d%% %lld/%lld tokens %.0f tok/s%s%s", interactive_ ? "\r" : "",
               bar.c_str(), percent, static_cast<long long>(p.ingested_tokens()),
               static_cast<long long>(p.num_tokens()), p.tokens_per_second(), eta.c_str(),
               interactive_ ? "\x1b[K" : "\n");
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Done() {
  if (drawn_ && interactive_) std::fprintf(stderr, "\n");
}

}  // namespace tome::cli
