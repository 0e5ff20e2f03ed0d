// Gauges for the server's own memory: resident set size, and when tomed runs on jemalloc
// (TOME_JEMALLOC), what the allocator holds: bytes in live allocations against bytes it keeps
// resident. Under load the difference tells allocator retention apart from growth of live data.
#pragma once

#include "metrics/metrics.h"

namespace tome::services {

void AddProcessMemoryGauges(Metrics& metrics);

}  // namespace tome::services
