#include "metrics/process_memory.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>

#ifdef TOME_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>

// jemalloc reads its options from this symbol at start-up: a background thread returns
// freed pages to the system on time, also while the server is idle (MALLOC_CONF overrides).
extern "C" const char* malloc_conf = "background_thread:true";
#endif

namespace tome::services {
namespace {

using Samples = std::vector<std::pair<Metrics::Labels, double>>;

// Resident pages of this process (/proc/self/statm, second field), in bytes; -1 if unreadable.
double ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long long size = 0, resident = 0;
  const bool ok = std::fscanf(f, "%lld %lld", &size, &resident) == 2;
  std::fclose(f);
  return ok ? double(resident) * double(sysconf(_SC_PAGESIZE)) : -1;
}

#ifdef TOME_WITH_JEMALLOC
// jemalloc's statistics are a snapshot refreshed by writing the "epoch" control.
Samples AllocatorBytes() {
  uint64_t epoch = 1;
  size_t epoch_size = sizeof(epoch);
  mallctl("epoch", &epoch, &epoch_size, &epoch, epoch_size);
  Samples out;
  for (const char* stat : {"allocated", "active", "resident", "retained"}) {
    size_t value = 0, size = sizeof(value);
    const std::string name = std::string("stats.") + stat;
    if (mallctl(name.c_str(), &value, &size, nullptr, 0) == 0) {
      out.push_back({{{"kind", stat}}, double(value)});
    }
  }
  return out;
}
#endif

}  // namespace

void AddProcessMemoryGauges(Metrics& metrics) {
  metrics.Gauge("tome_process_resident_bytes", "resident set size of tomed", [] {
    return Samples{{{}, ResidentBytes()}};
  });
#ifdef TOME_WITH_JEMALLOC
  metrics.Gauge("tome_allocator_bytes",
                "jemalloc: allocated (live objects), active (their pages), resident, retained",
                AllocatorBytes);
#endif
}

}  // namespace tome::services
