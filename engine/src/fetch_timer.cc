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
                                         "views: fetched pages set"};

struct Totals {
  std::array<std::atomic<int64_t>, kPhases> ns{}, calls{}, items{};
  ~Totals() {
    int64_t all = 0;
    for (const auto& n : ns) all += n.load();
    if (calls[0].load() == 0 && all == 0) return;
    std::fprintf(stderr,
                 "\nstorage-backed attention host times (TOME_FETCH_TIMES=1): %.1f ms in all\n"
                 "| phase | calls | ms | us per call | items |\n|---|---:|---:|---:|---:|\n",
                 all / 1e6);
    for (int p = 0; p < kPhases; ++p) {
      const int64_t c = calls[p].load();
      std::fprintf(stderr, "| %s | %lld | %.1f | %.1f | %lld |\n", kNames[p],
                   static_cast<long long>(c), ns[p].load() / 1e6,
                   c > 0 ? ns[p].load() / 1e3 / static_cast<double>(c) : 0.0,
                   static_cast<long long>(items[p].load()));
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
  const int p = static_cast<int>(phase);
  Totals& t = totals();
  t.ns[p] += std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  t.calls[p] += 1;
  t.items[p] += items;
}

}  // namespace tome::engine
