#include "fetch_timer.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tome::engine {
namespace {

constexpr int kPhases = static_cast<int>(FetchPhase::kCount);
constexpr const char* kNames[kPhases] = {"selection to host (waits for queued work)",
                                         "plan: blocks to fetch, views",
                                         "cache: tier lookups",
                                         "cache: store reads",
                                         "cache: slots, upload, LRU insertion",
                                         "views: fetched pages set",
                                         "attention call: page tables, launch"};

constexpr const char* kCallNames[2] = {"prefill", "decode"};

thread_local bool decode_call = false;

struct Totals {
  // [decode][phase]
  std::array<std::array<std::atomic<int64_t>, kPhases>, 2> ns{}, calls{}, items{};
  ~Totals() {
    int64_t all = 0;
    for (const auto& call : ns) {
      for (const auto& n : call) all += n.load();
    }
    if (all == 0) return;
    std::fprintf(stderr,
                 "\nstorage-backed attention host times (TOME_FETCH_TIMES=1): %.1f ms in all\n"
                 "| call | phase | calls | ms | us per call | items |\n"
                 "|---|---|---:|---:|---:|---:|\n",
                 all / 1e6);
    for (int k = 0; k < 2; ++k) {
      for (int p = 0; p < kPhases; ++p) {
        const int64_t c = calls[k][p].load();
        if (c == 0) continue;
        std::fprintf(stderr, "| %s | %s | %lld | %.1f | %.1f | %lld |\n", kCallNames[k], kNames[p],
                     static_cast<long long>(c), ns[k][p].load() / 1e6,
                     ns[k][p].load() / 1e3 / static_cast<double>(c),
                     static_cast<long long>(items[k][p].load()));
      }
    }
  }
};

Totals& totals() {
  static Totals t;
  return t;
}

}  // namespace

bool FetchTimesEnabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("TOME_FETCH_TIMES");
    return env != nullptr && *env != '\0' && std::strcmp(env, "0") != 0;
  }();
  return enabled;
}

void AddFetchTime(FetchPhase phase, std::chrono::steady_clock::duration d, int64_t items) {
  const int p = static_cast<int>(phase), k = decode_call ? 1 : 0;
  Totals& t = totals();
  t.ns[k][p] += std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  t.calls[k][p] += 1;
  t.items[k][p] += items;
}

ScopedFetchCall::ScopedFetchCall(bool decode) : previous_(decode_call) { decode_call = decode; }
ScopedFetchCall::~ScopedFetchCall() { decode_call = previous_; }

}  // namespace tome::engine
