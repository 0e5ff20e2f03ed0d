// tome_load_gen: a mixed load against a running tomed, over gRPC, for a fixed time.
//
//   tome_load_gen --server=127.0.0.1:7070 --clients=64 --duration_s=300 --server_pid=PID
//
// The API key comes from --api_key or $TOME_API_KEY. Each client thread has its own
// connection, owns a few documents and sessions, and loops until --duration_s is over,
// picking operations at random with the --mix weights:
//
//   ingest  CreateDocument + AppendText (two sections, a few KB stating an access code)
//   append  AppendText to one of its documents (a further piece stating another code)
//   ask     QueryService.Ask for an access code, about a document or within a session
//   fork    CreateSession + ForkSession + one Ask in the fork; the parent is then deleted
//   delete  DeleteDocument (after deleting the document's sessions)
//
// After ingest and append the client waits until the document is READY (WatchIngestion to
// the end of its stream), so it only ever asks about ingested text; that wait is reported
// as its own row, "ready". An operation that needs a document when the client has none
// ingests instead, and an ingest when the client already has --max_documents documents
// deletes one instead, so what the server stores stays bounded. After the run each client
// deletes its remaining sessions and documents (row "cleanup"; --cleanup=false keeps them).
//
// At the end it prints Markdown tables on stdout: count, throughput and latency percentiles
// per operation; errors by operation, call and status code with the first message of each;
// and the server's VmRSS over time (from /proc/PID/status, with --server_pid; also at the
// end of the load and after the cleanup). Progress goes to stderr every --sample_s. A failed
// call is counted and the client backs off briefly; the run stops early if the server
// process disappears. Exit status: 0 if every call succeeded, 1 if any failed (or the server
// died), 2 for bad flags or an unreachable server.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/distributions.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testutil/http_get.h"
#include "tome/services/bearer_interceptor.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"
#include "tome/v1/sessions.grpc.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:7070", "tomed address (host:port)");
ABSL_FLAG(std::string, api_key, "", "tenant API key (default: $TOME_API_KEY)");
ABSL_FLAG(int, clients, 64, "concurrent client threads, one connection each");
ABSL_FLAG(double, duration_s, 300, "seconds during which clients start operations");
ABSL_FLAG(std::string, mix, "ingest=1,append=2,ask=6,fork=1,delete=1",
          "relative weights of the operations ingest, append, ask, fork, delete");
ABSL_FLAG(int, server_pid, 0, "pid of tomed, to sample its VmRSS (0: no memory table)");
ABSL_FLAG(double, sample_s, 10, "seconds between RSS samples and progress lines");
ABSL_FLAG(int, metrics_port, 0,
          "tomed's metrics port on 127.0.0.1, to sample its state cache and allocator bytes "
          "beside its RSS (0: RSS only)");
ABSL_FLAG(double, warmup_s, -1,
          "seconds of warm-up excluded from the RSS trend (default: a fifth of the run)");
ABSL_FLAG(uint64_t, seed, 1, "seed of the clients' random choices and texts");
ABSL_FLAG(int, max_tokens, 16, "answer tokens per Ask");
ABSL_FLAG(int, document_kb, 3, "text of an ingested document, KiB");
ABSL_FLAG(int, append_kb, 1, "text of an appended piece, KiB");
ABSL_FLAG(int, max_documents, 4, "documents a client keeps at most");
ABSL_FLAG(int, max_sessions, 2, "sessions a client keeps at most (oldest deleted first)");
ABSL_FLAG(int, max_turns, 8, "questions asked within one session at most");
ABSL_FLAG(double, call_timeout_s, 120, "deadline of every call but WatchIngestion, seconds");
ABSL_FLAG(bool, cleanup, true,
          "delete every remaining session and document after the run (the server's memory is "
          "sampled before and after)");
ABSL_FLAG(double, ready_timeout_s, 600,
          "deadline of WatchIngestion, seconds (ingestion queues up under load)");

namespace {

namespace v1 = tome::v1;
using Rng = std::mt19937_64;

// --- operations and their statistics ----------------------------------------------------------

// "ready" (waiting for ingestion after ingest/append) and "cleanup" (deleting what is left
// after the run, one call per session or document) are not in the mix.
enum Op { kIngest, kAppend, kAsk, kFork, kDelete, kReady, kCleanup, kNumOps };
constexpr int kNumMixOps = kReady;
constexpr std::array<const char*, kNumOps> kOpNames = {"ingest", "append", "ask",    "fork",
                                                       "delete", "ready",  "cleanup"};

struct ErrorInfo {
  int64_t count = 0;
  std::string first_message;
};
// (operation, call, status code name): a call's failure as the report groups it.
using ErrorKey = std::tuple<int, std::string, std::string>;

struct Stats {
  std::array<std::vector<double>, kNumOps> latency_ms;  // successful operations only
  std::array<int64_t, kNumOps> failed = {};
  std::map<ErrorKey, ErrorInfo> errors;
  int64_t answers = 0;            // completed Asks (including those of fork)
  int64_t answers_with_code = 0;  // ... whose answer contains the access code asked for
  int64_t generated_tokens = 0;
  // Sums of the answers' server-side timings (AskSummary.timings), ms, and state sources.
  double queue_ms = 0, load_state_ms = 0, prefill_ms = 0, first_token_ms = 0, total_ms = 0;
  std::map<std::string, int64_t> state_sources;

  void Merge(const Stats& other) {
    for (int op = 0; op < kNumOps; ++op) {
      latency_ms[op].insert(latency_ms[op].end(), other.latency_ms[op].begin(),
                            other.latency_ms[op].end());
      failed[op] += other.failed[op];
    }
    for (const auto& [key, info] : other.errors) {
      ErrorInfo& mine = errors[key];
      if (mine.count == 0) mine.first_message = info.first_message;
      mine.count += info.count;
    }
    answers += other.answers;
    answers_with_code += other.answers_with_code;
    generated_tokens += other.generated_tokens;
    queue_ms += other.queue_ms;
    load_state_ms += other.load_state_ms;
    prefill_ms += other.prefill_ms;
    first_token_ms += other.first_token_ms;
    total_ms += other.total_ms;
    for (const auto& [source, n] : other.state_sources) state_sources[source] += n;
  }
};

// Shared counters for the progress lines (the detailed stats are per client until the end),
// and the signal to stop early.
struct Progress {
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> failed{0};
  std::atomic<bool> stop{false};  // the server process is gone
};

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

absl::StatusOr<std::array<double, kNumMixOps>> ParseMix(absl::string_view mix) {
  std::array<double, kNumMixOps> weights = {};
  for (absl::string_view item : absl::StrSplit(mix, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, '=');
    const auto name = std::find(kOpNames.begin(), kOpNames.begin() + kNumMixOps,
                                absl::StripAsciiWhitespace(kv.first));
    double weight = 0;
    if (name == kOpNames.begin() + kNumMixOps ||
        !absl::SimpleAtod(absl::StripAsciiWhitespace(kv.second), &weight) || weight < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--mix: bad item \"", item, "\" (want name=weight, names ingest, append, ask, fork, "
          "delete, weights >= 0)"));
    }
    weights[name - kOpNames.begin()] = weight;
  }
  double total = 0;
  for (double w : weights) total += w;
  if (total <= 0) return absl::InvalidArgumentError("--mix: all weights are 0");
  return weights;
}

// --- generated text ---------------------------------------------------------------------------

// A fact stated in a document, "The access code for <name> is <code>.", the one kind of
// question the default model is trained to answer.
struct Fact {
  std::string name;
  std::string code;
};

template <size_t N>
absl::string_view Choose(Rng& rng, const std::array<absl::string_view, N>& words) {
  return words[absl::Uniform<size_t>(rng, 0, N)];
}

Fact NewFact(Rng& rng) {
  static constexpr std::array<absl::string_view, 16> kFirst = {
      "Elias", "Marta", "Jonas", "Ingrid", "Tomas", "Helena", "Oskar", "Lena",
      "Viktor", "Clara", "Anton", "Sofia", "Emil", "Nora", "Felix", "Ada"};
  static constexpr std::array<absl::string_view, 16> kLast = {
      "Varga", "Lind", "Okafor", "Brandt", "Moreau", "Novak", "Castillo", "Petrov",
      "Hale", "Sato", "Berg", "Quinn", "Rossi", "Dahl", "Keller", "Marsh"};
  return {absl::StrCat(Choose(rng, kFirst), " ", Choose(rng, kLast)),
          absl::StrCat(absl::Uniform<int>(rng, 10000, 100000))};
}

// About `bytes` of plain narrative sentences, in paragraphs, with `fact` (if any) stated at a
// random sentence boundary.
std::string Text(Rng& rng, size_t bytes, const Fact* fact) {
  static constexpr std::array<absl::string_view, 10> kWho = {
      "The keeper", "A fisherman", "The harbour master", "The night watch",
      "The schoolteacher", "The radio operator", "A visiting painter", "The ferry captain",
      "The lamp trimmer", "An old sailor"};
  static constexpr std::array<absl::string_view, 10> kDid = {
      "checked", "passed", "painted", "watched", "repaired",
      "counted", "visited", "described", "mentioned", "crossed"};
  static constexpr std::array<absl::string_view, 10> kWhat = {
      "the north pier", "the signal lamp", "the tide tables", "the green ledger",
      "the stone stairs", "the boat shed", "the weather vane", "the fog bell",
      "the coal store", "the lantern room"};
  static constexpr std::array<absl::string_view, 10> kWhen = {
      "before dawn", "every evening", "after the storm", "in early spring", "at low tide",
      "on Sundays", "during the gale", "at noon", "late in autumn", "once a week"};
  const size_t sentences = std::max<size_t>(2, bytes / 48);
  const size_t at = absl::Uniform<size_t>(rng, 0, sentences);
  std::string text;
  for (size_t i = 0; i < sentences; ++i) {
    if (fact != nullptr && i == at) {
      absl::StrAppend(&text, "The access code for ", fact->name, " is ", fact->code, ". ");
    }
    absl::StrAppend(&text, Choose(rng, kWho), " ", Choose(rng, kDid), " ", Choose(rng, kWhat),
                    " ", Choose(rng, kWhen), ".", i % 6 == 5 ? "\n\n" : " ");
  }
  text.back() = '\n';
  return text;
}

// --- one client -------------------------------------------------------------------------------

struct ClientOptions {
  std::array<double, kNumMixOps> mix = {};
  int max_tokens = 16;
  size_t document_bytes = 3 << 10;
  size_t append_bytes = 1 << 10;
  size_t max_documents = 4;
  size_t max_sessions = 2;
  int max_turns = 8;
  absl::Duration call_timeout = absl::Seconds(120);
  absl::Duration ready_timeout = absl::Seconds(600);
};

class Client {
 public:
  Client(int index, const std::shared_ptr<grpc::Channel>& channel, const ClientOptions& options,
         uint64_t seed, Progress* progress)
      : index_(index),
        options_(options),
        rng_(seed),
        progress_(progress),
        documents_(v1::DocumentService::NewStub(channel)),
        queries_(v1::QueryService::NewStub(channel)),
        sessions_(v1::SessionService::NewStub(channel)) {}

  // Runs operations until `end` (the last one started before `end` runs to completion).
  void Run(absl::Time end) {
    while (absl::Now() < end && !progress_->stop.load()) {
      const int64_t failed_before = Failures();
      switch (Applicable(PickOp())) {
        case kIngest: {
          size_t doc = 0;
          if (Timed(kIngest, [&] { return Ingest(&doc); })) {
            Timed(kReady, [&] { return WaitReady(docs_[doc]); });
          }
          break;
        }
        case kAppend: {
          Doc& doc = docs_[PickReadyDocument()];
          if (Timed(kAppend, [&] { return Append(doc); })) {
            Timed(kReady, [&] { return WaitReady(doc); });
          }
          break;
        }
        case kAsk: Timed(kAsk, [&] { return AskOnce(); }); break;
        case kFork: Timed(kFork, [&] { return Fork(); }); break;
        case kDelete: Timed(kDelete, [&] { return DeleteOne(); }); break;
        default: break;
      }
      // Back off after a failure (50 ms doubling to 2 s), as a real client would, so that an
      // unreachable server is not hammered (and counted) millions of times.
      if (Failures() > failed_before) {
        backoff_ = std::min(absl::Seconds(2), backoff_ == absl::ZeroDuration()
                                                  ? absl::Milliseconds(50)
                                                  : backoff_ * 2);
        absl::SleepFor(std::min(backoff_, end - absl::Now()));
      } else {
        backoff_ = absl::ZeroDuration();
      }
    }
  }

  // Deletes every session and document the client still has.
  void Cleanup() {
    for (const Session& s : sessions_list_) Timed(kCleanup, [&] { return DeleteSession(s.id); });
    sessions_list_.clear();
    for (const Doc& d : docs_) Timed(kCleanup, [&] { return DeleteDocument(d.id); });
    docs_.clear();
  }

  const Stats& stats() const { return stats_; }

 private:
  struct Doc {
    std::string id;
    std::vector<Fact> facts;  // the access codes its text states
    bool ready = false;       // READY after its last append (else not asked about)
  };
  struct Session {
    std::string id;
    size_t doc_facts = 0;  // facts of its document at the session's version
    std::string doc_id;
    int turns = 0;
  };

  int64_t Failures() const {
    int64_t n = 0;
    for (int64_t f : stats_.failed) n += f;
    return n;
  }

  Op PickOp() {
    double total = 0;
    for (double w : options_.mix) total += w;
    double x = absl::Uniform(rng_, 0.0, total);
    for (int op = 0; op < kNumMixOps; ++op) {
      if (x < options_.mix[op]) return static_cast<Op>(op);
      x -= options_.mix[op];
    }
    return kAsk;
  }

  // `op`, or what runs instead when this client's documents do not allow it.
  Op Applicable(Op op) const {
    const bool any_ready =
        std::any_of(docs_.begin(), docs_.end(), [](const Doc& d) { return d.ready; });
    if (op == kDelete && docs_.empty()) op = kIngest;
    if ((op == kAppend || op == kAsk || op == kFork) && !any_ready) op = kIngest;
    if (op == kIngest && docs_.size() >= options_.max_documents) op = kDelete;
    return op;
  }

  size_t PickReadyDocument() {
    std::vector<size_t> ready;
    for (size_t i = 0; i < docs_.size(); ++i) {
      if (docs_[i].ready) ready.push_back(i);
    }
    return ready[absl::Uniform<size_t>(rng_, 0, ready.size())];
  }

  // Runs one operation, recording its latency if it succeeded.
  template <typename Fn>
  bool Timed(Op op, Fn fn) {
    op_ = op;
    const absl::Time start = absl::Now();
    const bool ok = fn();
    if (ok) {
      stats_.latency_ms[op].push_back(Ms(absl::Now() - start));
      ++progress_->ok;
    } else {
      ++stats_.failed[op];
      ++progress_->failed;
    }
    return ok;
  }

  // Records a failed call of the current operation under `code`.
  bool Fail(absl::string_view call, absl::string_view code, absl::string_view message) {
    ErrorInfo& e = stats_.errors[{op_, std::string(call), std::string(code)}];
    if (e.count++ == 0) e.first_message = std::string(message);
    return false;
  }
  bool Check(absl::string_view call, const grpc::Status& status) {
    if (status.ok()) return true;
    return Fail(call,
                absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
                status.error_message());
  }
  // A reply the API does not allow (the call itself succeeded).
  bool Protocol(absl::string_view call, absl::string_view message) {
    return Fail(call, "client check", message);
  }

  void Prepare(grpc::ClientContext* context) const {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
  }
  void PrepareWatch(grpc::ClientContext* context) const {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.ready_timeout));
  }

  // --- calls ---

  bool AppendText(const std::string& doc_id,
                  const std::vector<std::pair<std::string, std::string>>& pieces) {
    grpc::ClientContext context;
    Prepare(&context);
    v1::AppendTextResponse response;
    auto writer = documents_->AppendText(&context, &response);
    for (size_t i = 0; i < pieces.size(); ++i) {
      v1::AppendTextRequest request;
      if (i == 0) request.set_document_id(doc_id);
      request.set_section(pieces[i].first);
      request.set_text(pieces[i].second);
      if (!writer->Write(request)) break;  // the server ended the call; Finish says why
    }
    writer->WritesDone();
    if (!Check("DocumentService.AppendText", writer->Finish())) return false;
    size_t bytes = 0;
    for (const auto& piece : pieces) bytes += piece.second.size();
    if (response.appended_bytes() != static_cast<int64_t>(bytes)) {
      return Protocol("DocumentService.AppendText",
                      absl::StrCat("appended_bytes ", response.appended_bytes(), ", sent ", bytes));
    }
    return true;
  }

  // Watches the document's ingestion to the end of the stream (READY or FAILED).
  bool WaitReady(Doc& doc) {
    grpc::ClientContext context;
    PrepareWatch(&context);
    v1::WatchIngestionRequest request;
    request.set_document_id(doc.id);
    auto reader = documents_->WatchIngestion(&context, request);
    v1::IngestionProgress progress;
    v1::DocumentStatus last = v1::DOCUMENT_STATUS_UNSPECIFIED;
    std::string error;
    while (reader->Read(&progress)) {
      last = progress.status();
      error = progress.error();
    }
    if (!Check("DocumentService.WatchIngestion", reader->Finish())) return false;
    if (last == v1::DOCUMENT_STATUS_FAILED) {
      return Fail("DocumentService.WatchIngestion", "document FAILED", error);
    }
    if (last != v1::DOCUMENT_STATUS_READY) {
      return Protocol("DocumentService.WatchIngestion",
                      absl::StrCat("the stream ended OK at status ",
                                   v1::DocumentStatus_Name(last), ", not READY"));
    }
    doc.ready = true;
    return true;
  }

  // Asks for `fact`'s access code (about a document or within a session, as `request`
  // says) and reads the answer to the end.
  bool Ask(v1::AskRequest request, const Fact& fact, v1::AskSummary* summary) {
    grpc::ClientContext context;
    Prepare(&context);
    request.set_question(absl::StrCat("What is the access code for ", fact.name, "?"));
    request.set_max_tokens(options_.max_tokens);
    auto stream = queries_->Ask(&context, request);
    v1::AskResponse response;
    std::string deltas;
    bool have_summary = false;
    while (stream->Read(&response)) {
      if (response.has_delta()) deltas += response.delta().text();
      if (response.has_summary()) {
        *summary = response.summary();
        have_summary = true;
      }
    }
    if (!Check("QueryService.Ask", stream->Finish())) return false;
    if (!have_summary) return Protocol("QueryService.Ask", "the stream ended without a summary");
    if (summary->answer() != deltas) {
      return Protocol("QueryService.Ask", "the summary's answer is not the deltas' concatenation");
    }
    ++stats_.answers;
    stats_.generated_tokens += summary->generated_tokens();
    if (absl::StrContains(summary->answer(), fact.code)) ++stats_.answers_with_code;
    const v1::Timings& t = summary->timings();
    stats_.queue_ms += t.queue_ms();
    stats_.load_state_ms += t.load_state_ms();
    stats_.prefill_ms += t.prefill_ms();
    stats_.first_token_ms += t.first_token_ms();
    stats_.total_ms += t.total_ms();
    ++stats_.state_sources[summary->state_source()];
    return true;
  }

  bool DeleteSession(const std::string& id) {
    grpc::ClientContext context;
    Prepare(&context);
    v1::DeleteSessionRequest request;
    request.set_session_id(id);
    v1::DeleteSessionResponse response;
    return Check("SessionService.DeleteSession", sessions_->DeleteSession(&context, request, &response));
  }

  // --- operations ---

  bool Ingest(size_t* doc_index) {
    v1::Document doc;
    {
      grpc::ClientContext context;
      Prepare(&context);
      v1::CreateDocumentRequest request;
      request.set_name(absl::StrCat("load-", index_, "-", ++created_));
      if (!Check("DocumentService.CreateDocument",
                 documents_->CreateDocument(&context, request, &doc))) {
        return false;
      }
    }
    // Kept even if the append fails, so that a later delete removes it.
    docs_.push_back({doc.id(), {}, false});
    *doc_index = docs_.size() - 1;
    // Two named sections; the fact is in one of them.
    const Fact fact = NewFact(rng_);
    const size_t half = options_.document_bytes / 2;
    const bool first = absl::Bernoulli(rng_, 0.5);
    std::string part1 = Text(rng_, half, first ? &fact : nullptr);
    std::string part2 = Text(rng_, half, first ? nullptr : &fact);
    if (!AppendText(doc.id(), {{"part 1", std::move(part1)}, {"part 2", std::move(part2)}})) {
      return false;
    }
    docs_.back().facts.push_back(fact);
    return true;
  }

  bool Append(Doc& doc) {
    Fact fact = NewFact(rng_);
    // A name the document already states would make its question ambiguous.
    while (std::any_of(doc.facts.begin(), doc.facts.end(),
                       [&](const Fact& f) { return f.name == fact.name; })) {
      fact = NewFact(rng_);
    }
    if (!AppendText(doc.id, {{"", Text(rng_, options_.append_bytes, &fact)}})) return false;
    doc.facts.push_back(fact);
    doc.ready = false;
    return true;
  }

  bool AskOnce() {
    // Within a session half of the time, if one has turns left.
    std::vector<size_t> open;
    for (size_t i = 0; i < sessions_list_.size(); ++i) {
      if (sessions_list_[i].turns < options_.max_turns) open.push_back(i);
    }
    v1::AskRequest request;
    v1::AskSummary summary;
    if (!open.empty() && absl::Bernoulli(rng_, 0.5)) {
      Session& s = sessions_list_[open[absl::Uniform<size_t>(rng_, 0, open.size())]];
      const Doc* doc = FindDoc(s.doc_id);  // sessions go before their document
      if (doc == nullptr) return Protocol("(client)", "a session outlived its document");
      const Fact& fact = doc->facts[absl::Uniform<size_t>(rng_, 0, s.doc_facts)];
      request.set_session_id(s.id);
      if (!Ask(request, fact, &summary)) return false;
      return CheckTurn(s, summary);
    }
    const Doc& doc = docs_[PickReadyDocument()];
    request.set_document_id(doc.id);
    return Ask(request, doc.facts[absl::Uniform<size_t>(rng_, 0, doc.facts.size())], &summary);
  }

  // A session's answer must name it and count its turns (this client alone uses it).
  bool CheckTurn(Session& s, const v1::AskSummary& summary) {
    ++s.turns;
    if (summary.session_id() != s.id || summary.turn() != s.turns) {
      return Protocol("QueryService.Ask",
                      absl::StrCat("session ", s.id, " turn ", s.turns, ": the summary says session ",
                                   summary.session_id(), " turn ", summary.turn()));
    }
    return true;
  }

  bool Fork() {
    const Doc& doc = docs_[PickReadyDocument()];
    v1::Session parent, child;
    {
      grpc::ClientContext context;
      Prepare(&context);
      v1::CreateSessionRequest request;
      request.set_document_id(doc.id);
      if (!Check("SessionService.CreateSession",
                 sessions_->CreateSession(&context, request, &parent))) {
        return false;
      }
    }
    {
      grpc::ClientContext context;
      Prepare(&context);
      v1::ForkSessionRequest request;
      request.set_session_id(parent.id());
      const grpc::Status forked = sessions_->ForkSession(&context, request, &child);
      if (!forked.ok()) {
        Check("SessionService.ForkSession", forked);
        DeleteSession(parent.id());
        return false;
      }
    }
    bool ok = DeleteSession(parent.id());
    if (child.parent_session_id() != parent.id() || child.document_id() != doc.id) {
      DeleteSession(child.id());
      return Protocol("SessionService.ForkSession",
                      absl::StrCat("fork of ", parent.id(), " on document ", doc.id,
                                   " says parent ", child.parent_session_id(), ", document ",
                                   child.document_id()));
    }
    // Keep the fork for later questions, with the oldest session deleted beyond the bound.
    if (sessions_list_.size() >= options_.max_sessions) {
      ok = DeleteSession(sessions_list_.front().id) && ok;
      sessions_list_.erase(sessions_list_.begin());
    }
    sessions_list_.push_back({child.id(), doc.facts.size(), doc.id, 0});
    Session& s = sessions_list_.back();
    v1::AskRequest request;
    request.set_session_id(s.id);
    v1::AskSummary summary;
    const Fact& fact = doc.facts[absl::Uniform<size_t>(rng_, 0, doc.facts.size())];
    return Ask(request, fact, &summary) && CheckTurn(s, summary) && ok;
  }

  bool DeleteOne() {
    // A document that is not READY (its ingestion or wait failed) goes first.
    size_t victim = absl::Uniform<size_t>(rng_, 0, docs_.size());
    for (size_t i = 0; i < docs_.size(); ++i) {
      if (!docs_[i].ready) victim = i;
    }
    const std::string id = docs_[victim].id;
    bool ok = true;
    for (auto it = sessions_list_.begin(); it != sessions_list_.end();) {
      if (it->doc_id == id) {
        ok = DeleteSession(it->id) && ok;
        it = sessions_list_.erase(it);
      } else {
        ++it;
      }
    }
    docs_.erase(docs_.begin() + victim);  // forgotten even if the call fails
    return DeleteDocument(id) && ok;
  }

  bool DeleteDocument(const std::string& id) {
    grpc::ClientContext context;
    Prepare(&context);
    v1::DeleteDocumentRequest request;
    request.set_document_id(id);
    v1::DeleteDocumentResponse response;
    return Check("DocumentService.DeleteDocument",
                 documents_->DeleteDocument(&context, request, &response));
  }

  const Doc* FindDoc(const std::string& id) const {
    for (const Doc& d : docs_) {
      if (d.id == id) return &d;
    }
    return nullptr;
  }

  const int index_;
  const ClientOptions options_;
  Rng rng_;
  Progress* progress_;
  std::unique_ptr<v1::DocumentService::Stub> documents_;
  std::unique_ptr<v1::QueryService::Stub> queries_;
  std::unique_ptr<v1::SessionService::Stub> sessions_;
  std::vector<Doc> docs_;
  std::vector<Session> sessions_list_;
  int64_t created_ = 0;
  Op op_ = kIngest;  // the operation running, for error records
  absl::Duration backoff_;
  Stats stats_;
};

// --- server memory ----------------------------------------------------------------------------

// VmRSS of `pid` in KiB, or -1 if it cannot be read (the process is gone).
int64_t ReadVmRssKib(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) return kib;
  }
  return -1;
}

// The host's 1-minute load average (the server shares the machine with the generator and
// with whatever else runs there), or -1.
double ReadLoadAverage() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  if (!(in >> load)) return -1;
  return load;
}

// Values of the series named exactly `series` (name plus labels, as rendered) in a
// Prometheus text page, or -1 if absent.
double MetricValue(const std::string& page, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (!absl::ConsumePrefix(&line, series) || !absl::ConsumePrefix(&line, " ")) continue;
    double value = -1;
    if (absl::SimpleAtod(line, &value)) return value;
  }
  return -1;
}

struct RssSample {
  double elapsed_s = 0;
  int64_t rss_kib = -1;
  double load = -1;
  std::string note;
  // From the metrics page (--metrics_port), MiB; -1 when not sampled.
  double state_cache_mib = -1;
  double allocated_mib = -1;
};

// The server's own accounting of its memory, from its metrics page.
void ReadServerMetrics(int port, RssSample& s) {
  if (port <= 0) return;
  const std::string page = tome::testing::HttpGet(port, "/metrics");
  const double mib = 1 << 20;
  const double cache = MetricValue(page, "tome_state_cache_bytes");
  const double allocated = MetricValue(page, "tome_allocator_bytes{kind=\"allocated\"}");
  if (cache >= 0) s.state_cache_mib = cache / mib;
  if (allocated >= 0) s.allocated_mib = allocated / mib;
}

// Samples the server's RSS every `period` from Start() to Stop() (and once at each end), and
// prints a progress line to stderr with each sample. When the server process is gone it tells
// the clients to stop.
class Sampler {
 public:
  Sampler(int pid, int metrics_port, absl::Duration period, Progress* progress)
      : pid_(pid), metrics_port_(metrics_port), period_(period), progress_(progress) {}

  void Start(absl::Time start) {
    start_ = start;
    thread_ = std::thread([this] {
      Sample("start");
      while (!stop_.WaitForNotificationWithTimeout(period_)) Sample();
    });
  }
  void Stop(const std::string& note) {
    stop_.Notify();
    thread_.join();
    Sample(note);
  }
  // Takes a sample now, labelled.
  void Sample(const std::string& note = "") {
    absl::MutexLock lock(&mu_);
    RssSample s{absl::ToDoubleSeconds(absl::Now() - start_), pid_ > 0 ? ReadVmRssKib(pid_) : -1,
                ReadLoadAverage(), note};
    ReadServerMetrics(metrics_port_, s);
    samples_.push_back(s);
    if (pid_ > 0 && s.rss_kib < 0 && server_gone_s_ < 0) {
      server_gone_s_ = s.elapsed_s;
      progress_->stop = true;
      absl::FPrintF(stderr, "tome_load_gen: the server (pid %d) is gone; stopping\n", pid_);
    }
    absl::FPrintF(stderr, "[%6.1f s] ok %d, failed %d, load %.2f%s\n", s.elapsed_s,
                  progress_->ok.load(), progress_->failed.load(), s.load,
                  s.rss_kib >= 0 ? absl::StrFormat(", server RSS %.1f MiB", s.rss_kib / 1024.0)
                                 : std::string());
  }
  std::vector<RssSample> samples() const {
    absl::MutexLock lock(&mu_);
    return samples_;
  }
  // When the server was first seen gone (seconds since the start), or -1.
  double server_gone_s() const {
    absl::MutexLock lock(&mu_);
    return server_gone_s_;
  }

 private:
  const int pid_;
  const int metrics_port_;
  const absl::Duration period_;
  Progress* progress_;
  absl::Time start_;
  absl::Notification stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<RssSample> samples_ ABSL_GUARDED_BY(mu_);
  double server_gone_s_ ABSL_GUARDED_BY(mu_) = -1;
};

// --- report -----------------------------------------------------------------------------------

void PrintOperations(const Stats& stats, double seconds) {
  absl::PrintF("### Operations\n\n");
  absl::PrintF("| operation | ok | failed | ok/s | p50 ms | p90 ms | p99 ms | max ms |\n");
  absl::PrintF("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  int64_t ok = 0, failed = 0;
  for (int op = 0; op < kNumOps; ++op) {
    std::vector<double> sorted = stats.latency_ms[op];
    std::sort(sorted.begin(), sorted.end());
    if (op == kCleanup && sorted.empty() && stats.failed[op] == 0) continue;
    // Cleanup runs after the load: no rate, and not in the total.
    const std::string rate =
        op == kCleanup ? "" : absl::StrFormat("%.2f", sorted.size() / seconds);
    absl::PrintF("| %s | %d | %d | %s | %.1f | %.1f | %.1f | %.1f |\n", kOpNames[op],
                 sorted.size(), stats.failed[op], rate, Percentile(sorted, 50),
                 Percentile(sorted, 90), Percentile(sorted, 99),
                 sorted.empty() ? 0.0 : sorted.back());
    if (op == kCleanup) continue;
    ok += static_cast<int64_t>(sorted.size());
    failed += stats.failed[op];
  }
  absl::PrintF("| all | %d | %d | %.2f | | | | |\n\n", ok, failed, ok / seconds);
  absl::PrintF(
      "Answers: %d (ask and fork), %d generated tokens (%.1f/s); %d (%.1f%%) contain the access "
      "code asked for.\n\n",
      stats.answers, stats.generated_tokens, stats.generated_tokens / seconds,
      stats.answers_with_code,
      stats.answers ? 100.0 * stats.answers_with_code / stats.answers : 0.0);
  if (stats.answers > 0) {
    const double n = static_cast<double>(stats.answers);
    std::string sources;
    for (const auto& [source, count] : stats.state_sources) {
      absl::StrAppend(&sources, sources.empty() ? "" : ", ", count, " from ",
                      source.empty() ? "(none)" : source);
    }
    absl::PrintF(
        "Server-side timings of the answers (mean ms): queue %.1f, load state %.1f, prefill "
        "%.1f, first token %.1f, total %.1f; states: %s.\n\n",
        stats.queue_ms / n, stats.load_state_ms / n, stats.prefill_ms / n,
        stats.first_token_ms / n, stats.total_ms / n, sources);
  }
}

void PrintErrors(const Stats& stats) {
  absl::PrintF("### Errors\n\n");
  if (stats.errors.empty()) {
    absl::PrintF("None.\n\n");
    return;
  }
  absl::PrintF("| operation | call | code | count | first message |\n|---|---|---|---:|---|\n");
  for (const auto& [key, info] : stats.errors) {
    std::string message = info.first_message;
    std::replace(message.begin(), message.end(), '\n', ' ');
    std::replace(message.begin(), message.end(), '|', '/');
    absl::PrintF("| %s | %s | %s | %d | %s |\n", kOpNames[std::get<0>(key)], std::get<1>(key),
                 std::get<2>(key), info.count, message);
  }
  absl::PrintF("\n");
}

// `seconds`: the load phase (the samples after it are of the cleanup).
// `warmup`: seconds left out of the trend.
void PrintMemory(const std::vector<RssSample>& samples, int pid, double seconds, double warmup) {
  absl::PrintF("### Server memory (VmRSS of pid %d)\n\n", pid);
  absl::PrintF(
      "State cache and allocated (bytes in live allocations, jemalloc) come from tomed's "
      "metrics.\n\n| elapsed s | RSS MiB | state cache MiB | allocated MiB | host load (1 min) "
      "| |\n|---:|---:|---:|---:|---:|---|\n");
  const auto mib = [](double v) { return v < 0 ? std::string("-") : absl::StrFormat("%.1f", v); };
  for (const RssSample& s : samples) {
    const std::string rss =
        s.rss_kib < 0 ? "(unreadable)" : absl::StrFormat("%.1f", s.rss_kib / 1024.0);
    absl::PrintF("| %.1f | %s | %s | %s | %.2f | %s |\n", s.elapsed_s, rss,
                 mib(s.state_cache_mib), mib(s.allocated_mib), s.load, s.note);
  }
  // Growth after warm-up: least-squares slope of RSS over time.
  std::vector<RssSample> late;
  for (const RssSample& s : samples) {
    if (s.elapsed_s >= warmup && s.elapsed_s <= seconds + 0.01 && s.rss_kib >= 0) {
      late.push_back(s);
    }
  }
  if (late.size() < 2) {
    absl::PrintF("\n");
    return;
  }
  double mt = 0, mr = 0, max = 0;
  for (const RssSample& s : late) {
    mt += s.elapsed_s / late.size();
    mr += s.rss_kib / 1024.0 / late.size();
    max = std::max(max, s.rss_kib / 1024.0);
  }
  double cov = 0, var = 0;
  for (const RssSample& s : late) {
    cov += (s.elapsed_s - mt) * (s.rss_kib / 1024.0 - mr);
    var += (s.elapsed_s - mt) * (s.elapsed_s - mt);
  }
  absl::PrintF(
      "\nUnder load after warm-up (%.0f s <= t <= end of load, %d samples): RSS %.1f -> %.1f MiB, max %.1f MiB, "
      "trend %+.2f MiB/min (least squares).\n\n",
      warmup, late.size(), late.front().rss_kib / 1024.0, late.back().rss_kib / 1024.0, max,
      var > 0 ? cov / var * 60 : 0.0);
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& server, const std::string& key) {
  grpc::ChannelArguments args;
  // Its own connection per client, as separate client processes would have (channels with
  // equal arguments otherwise share one).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      server, grpc::InsecureChannelCredentials(), args, tome::services::BearerInterceptors(key));
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (key.empty() && std::getenv("TOME_API_KEY") != nullptr) key = std::getenv("TOME_API_KEY");
  if (key.empty()) {
    absl::FPrintF(stderr, "tome_load_gen: give --api_key or set TOME_API_KEY\n");
    return 2;
  }
  auto mix = ParseMix(absl::GetFlag(FLAGS_mix));
  if (!mix.ok()) {
    absl::FPrintF(stderr, "tome_load_gen: %s\n", mix.status().message());
    return 2;
  }
  const int clients = absl::GetFlag(FLAGS_clients);
  const double duration_s = absl::GetFlag(FLAGS_duration_s);
  const double sample_s = absl::GetFlag(FLAGS_sample_s);
  if (clients <= 0 || duration_s <= 0 || sample_s <= 0 || absl::GetFlag(FLAGS_max_documents) <= 0 ||
      absl::GetFlag(FLAGS_max_sessions) <= 0 || absl::GetFlag(FLAGS_document_kb) <= 0 ||
      absl::GetFlag(FLAGS_append_kb) <= 0) {
    absl::FPrintF(stderr, "tome_load_gen: --clients, --duration_s, --sample_s, --max_documents, "
                          "--max_sessions, --document_kb and --append_kb must be positive\n");
    return 2;
  }
  ClientOptions options;
  options.mix = *mix;
  options.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  options.document_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_document_kb)) << 10;
  options.append_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_append_kb)) << 10;
  options.max_documents = absl::GetFlag(FLAGS_max_documents);
  options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options.max_turns = absl::GetFlag(FLAGS_max_turns);
  options.call_timeout = absl::Seconds(absl::GetFlag(FLAGS_call_timeout_s));
  options.ready_timeout = absl::Seconds(absl::GetFlag(FLAGS_ready_timeout_s));

  const std::string server = absl::GetFlag(FLAGS_server);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < clients; ++c) channels.push_back(NewChannel(server, key));
  if (!channels[0]->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
    absl::FPrintF(stderr, "tome_load_gen: cannot connect to %s\n", server);
    return 2;
  }

  Progress progress;
  std::vector<std::unique_ptr<Client>> workers;
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  for (int c = 0; c < clients; ++c) {
    // Distinct, reproducible streams per client.
    workers.push_back(std::make_unique<Client>(c, channels[c], options,
                                               seed * 1000003 + static_cast<uint64_t>(c),
                                               &progress));
  }
  const int pid = absl::GetFlag(FLAGS_server_pid);
  Sampler sampler(pid, absl::GetFlag(FLAGS_metrics_port), absl::Seconds(sample_s), &progress);
  absl::FPrintF(stderr, "tome_load_gen: %d clients for %.0f s against %s, mix %s\n", clients,
                duration_s, server, absl::GetFlag(FLAGS_mix));
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(duration_s);
  sampler.Start(start);
  std::vector<std::thread> threads;
  for (auto& worker : workers) threads.emplace_back([&w = *worker, end] { w.Run(end); });
  for (std::thread& t : threads) t.join();
  // Throughput is over the whole run, including the operations finishing after `end`.
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (absl::GetFlag(FLAGS_cleanup) && !progress.stop.load()) {
    sampler.Sample("end of load");
    threads.clear();
    for (auto& worker : workers) threads.emplace_back([&w = *worker] { w.Cleanup(); });
    for (std::thread& t : threads) t.join();
    absl::SleepFor(absl::Seconds(1));  // let the server finish the deletions' aftermath
    sampler.Stop("after cleanup");
  } else {
    sampler.Stop("end of load");
  }

  Stats total;
  for (const auto& worker : workers) total.Merge(worker->stats());
  absl::PrintF("## tome_load_gen: %d clients, %.1f s, mix %s, max_tokens %d, seed %d\n\n",
               clients, seconds, absl::GetFlag(FLAGS_mix), options.max_tokens, seed);
  PrintOperations(total, seconds);
  PrintErrors(total);
  const double warmup_s = absl::GetFlag(FLAGS_warmup_s);
  if (pid > 0) {
    PrintMemory(sampler.samples(), pid, seconds, warmup_s >= 0 ? warmup_s : seconds / 5);
  }
  if (sampler.server_gone_s() >= 0) {
    absl::PrintF("**The server process (pid %d) was gone at t = %.1f s; the run stopped early.**\n\n",
                 pid, sampler.server_gone_s());
  }
  std::fflush(stdout);
  int64_t failed = 0;
  for (int64_t f : total.failed) failed += f;
  return failed > 0 || !total.errors.empty() || sampler.server_gone_s() >= 0 ? 1 : 0;
}
