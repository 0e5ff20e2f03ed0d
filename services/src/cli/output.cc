#include "cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cli/flags.h"

namespace tome::cli {
namespace {

bool Json() { return absl::GetFlag(FLAGS_json); }

std::string StatusName(v1::DocumentStatus status) {
  switch (status) {
    case v1::DOCUMENT_STATUS_EMPTY: return "empty";
    case v1::DOCUMENT_STATUS_INGESTING: return "ingesting";
    case v1::DOCUMENT_STATUS_READY: return "ready";
    case v1::DOCUMENT_STATUS_FAILED: return "failed";
    default: return "unknown";
  }
}

std::string Limit(int64_t value, bool bytes = false) {
  if (value <= 0) return "no limit";
  return bytes ? Bytes(value) : absl::StrCat(value);
}

std::string Duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

// At most `max` bytes of `s`, cut at a UTF-8 character boundary.
absl::string_view Truncate(absl::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

}  // namespace

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

std::string Bytes(int64_t n) {
  if (n < 1024) return absl::StrFormat("%d B", n);
  if (n < (1 << 20)) return absl::StrFormat("%.1f KiB", n / 1024.0);
  if (n < (int64_t{1} << 30)) return absl::StrFormat("%.1f MiB", n / 1048576.0);
  return absl::StrFormat("%.2f GiB", n / 1073741824.0);
}

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

void PrintDocument(const v1::Document& d) {
  if (Json()) return PrintJson(d);
  std::printf("document %s \"%s\"\n  status: %s%s\n  version: %lld\n  text: %s, %lld tokens\n"
              "  ingested: %lld tokens\n  stored: %s\n",
              d.id().c_str(), d.name().c_str(), StatusName(d.status()).c_str(),
              d.error().empty() ? "" : (" (" + d.error() + ")").c_str(),
              static_cast<long long>(d.version()), Bytes(d.text_bytes()).c_str(),
              static_cast<long long>(d.num_tokens()), static_cast<long long>(d.ingested_tokens()),
              Bytes(d.stored_bytes()).c_str());
  if (d.num_sections() > 0) {
    std::printf("  sections: %lld\n", static_cast<long long>(d.num_sections()));
  }
  std::vector<std::string> sharing;
  if (d.public_()) sharing.push_back("public");
  if (d.shared_with_tenant_ids_size() > 0) {
    sharing.push_back(absl::StrCat("tenants ", absl::StrJoin(d.shared_with_tenant_ids(), ", ")));
  }
  if (!sharing.empty()) std::printf("  shared: %s\n", absl::StrJoin(sharing, "; ").c_str());
  if (d.create_time().seconds() > 0) {
    std::printf("  created: %s\n  updated: %s\n", Time(d.create_time()).c_str(),
                Time(d.update_time()).c_str());
  }
  if (d.versions_size() > 1) {
    std::printf("  versions:\n");
    for (const v1::DocumentVersion& v : d.versions()) {
      std::printf("    %lld: %lld tokens, %s, %s\n", static_cast<long long>(v.version()),
                  static_cast<long long>(v.num_tokens()), Bytes(v.text_bytes()).c_str(),
                  Time(v.create_time()).c_str());
    }
  }
}

void PrintDocumentRow(const v1::Document& d, bool header, bool show_access) {
  if (Json()) return PrintJson(d);
  if (header) {
    std::printf("%-8s %-10s %8s %12s %12s  %s\n", "ID", "STATUS", "VERSION", "TOKENS", "STORED",
                "NAME");
  }
  std::printf("%-8s %-10s %8lld %12lld %12s  %s%s\n", d.id().c_str(),
              StatusName(d.status()).c_str(), static_cast<long long>(d.version()),
              static_cast<long long>(d.num_tokens()), Bytes(d.stored_bytes()).c_str(),
              d.name().c_str(), show_access && !d.owned() ? "  (shared with you)" : "");
}

void PrintCitations(const v1::AskSummary& s) {
  if (s.citations_size() == 0) return;
  std::printf("\nSources:\n");
  int n = 0;
  for (const v1::Citation& c : s.citations()) {
    const std::string where = c.section().empty() ? "document" : c.section();
    const std::string lines =
        c.line_begin() == c.line_end()
            ? absl::StrCat("line ", c.line_begin())
            : absl::StrCat("lines ", c.line_begin(), "-", c.line_end());
    // Line numbers count from the start of the whole document, not of the section.
    std::printf("  [%d] %s, document %s (%.0f%%)\n", ++n, where.c_str(), lines.c_str(),
                100 * c.weight());
    // A few lines of the snippet, enough to recognize the passage.
    int shown = 0;
    for (absl::string_view line : absl::StrSplit(c.snippet(), '\n')) {
      line = absl::StripTrailingAsciiWhitespace(line);
      if (line.empty()) continue;
      if (++shown > 4) {
        std::printf("      | ...\n");
        break;
      }
      const absl::string_view cut = Truncate(line, 96);
      std::printf("      | %.*s%s\n", static_cast<int>(cut.size()), cut.data(),
                  cut.size() < line.size() ? "..." : "");
    }
  }
}

void PrintSummary(const v1::AskSummary& s) {
  std::printf("\n");
  PrintCitations(s);
  const std::string session =
      s.session_id().empty() ? ""
                             : absl::StrCat("session ", s.session_id(), " turn ", s.turn(), "; ");
  std::printf("\n[%s%lld tokens, stop: %s, state from %s; document %lld tokens, %lld prefilled "
              "now; question %lld tokens; first token %.0f ms, total %.0f ms, %.1f tokens/s]\n",
              session.c_str(), static_cast<long long>(s.generated_tokens()),
              s.stop_reason().c_str(), s.state_source().c_str(),
              static_cast<long long>(s.document_tokens()),
              static_cast<long long>(s.document_prefill_tokens()),
              static_cast<long long>(s.prompt_tokens()), s.timings().first_token_ms(),
              s.timings().total_ms(), s.timings().decode_tokens_per_second());
}

void PrintSession(const v1::Session& s) {
  if (Json()) return PrintJson(s);
  std::printf("session %s on document %s (version %lld)\n  turns: %lld, conversation: %lld "
              "tokens\n  created: %s\n  expires: %s\n",
              s.id().c_str(), s.document_id().c_str(), static_cast<long long>(s.document_version()),
              static_cast<long long>(s.turns()), static_cast<long long>(s.tail_tokens()),
              Time(s.create_time()).c_str(), Time(s.expire_time()).c_str());
  if (!s.parent_session_id().empty()) {
    std::printf("  forked from: %s\n", s.parent_session_id().c_str());
  }
}

void PrintSessionRow(const v1::Session& s, bool header) {
  if (Json()) return PrintJson(s);
  if (header) {
    std::printf("%-18s %-8s %7s %6s %8s  %-23s  %s\n", "ID", "DOCUMENT", "VERSION", "TURNS",
                "TOKENS", "EXPIRES", "PARENT");
  }
  std::printf("%-18s %-8s %7lld %6lld %8lld  %-23s  %s\n", s.id().c_str(),
              s.document_id().c_str(), static_cast<long long>(s.document_version()),
              static_cast<long long>(s.turns()), static_cast<long long>(s.tail_tokens()),
              Time(s.expire_time()).c_str(),
              s.parent_session_id().empty() ? "-" : s.parent_session_id().c_str());
}

void PrintTenant(const v1::Tenant& t) {
  if (Json()) return PrintJson(t);
  const v1::Quotas& q = t.quotas();
  const v1::Usage& u = t.usage();
  std::printf("tenant %s \"%s\"\n  created: %s\n", t.id().c_str(), t.name().c_str(),
              Time(t.create_time()).c_str());
  std::printf("  quotas: stored %s, documents %s, concurrent requests %s, tokens/minute %s, "
              "session TTL %s\n",
              Limit(q.max_stored_bytes(), true).c_str(), Limit(q.max_documents()).c_str(),
              Limit(q.max_concurrent_requests()).c_str(),
              Limit(q.max_tokens_per_minute()).c_str(),
              q.session_ttl_seconds() > 0 ? Duration(q.session_ttl_seconds()).c_str()
                                          : "server default");
  std::printf("  usage: stored %s, documents %lld, requests running %d, tokens in the last "
              "minute %lld\n",
              Bytes(u.stored_bytes()).c_str(), static_cast<long long>(u.documents()),
              u.concurrent_requests(), static_cast<long long>(u.tokens_last_minute()));
}

void PrintTenantRow(const v1::Tenant& t, bool header) {
  if (Json()) return PrintJson(t);
  if (header) {
    std::printf("%-20s %-24s %9s %12s  %s\n", "ID", "NAME", "DOCUMENTS", "STORED", "CREATED");
  }
  std::printf("%-20s %-24s %9lld %12s  %s\n", t.id().c_str(), t.name().c_str(),
              static_cast<long long>(t.usage().documents()),
              Bytes(t.usage().stored_bytes()).c_str(), Time(t.create_time()).c_str());
}

void PrintNewApiKey(const v1::ApiKey& k) {
  if (Json()) return PrintJson(k);
  std::printf("key %s for tenant %s%s\nsecret: %s\n", k.key_id().c_str(), k.tenant_id().c_str(),
              k.name().empty() ? "" : (" (" + k.name() + ")").c_str(), k.secret().c_str());
  std::fprintf(stderr,
               "The secret is shown only now. Use it as --api_key=SECRET or TOME_API_KEY.\n");
}

void PrintApiKeyRow(const v1::ApiKey& k, bool header) {
  if (Json()) return PrintJson(k);
  if (header) {
    std::printf("%-20s %-20s %-8s %-23s  %s\n", "KEY ID", "TENANT", "STATE", "CREATED", "NAME");
  }
  std::printf("%-20s %-20s %-8s %-23s  %s\n", k.key_id().c_str(), k.tenant_id().c_str(),
              k.revoked() ? "revoked" : "active", Time(k.create_time()).c_str(),
              k.name().c_str());
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
  const std::string eta = p.eta_seconds() > 0 ? " ETA " + Duration(p.eta_seconds()) : "";
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
