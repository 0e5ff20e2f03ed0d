// Benchmarks of cold reads: empties the OS page cache (needs root).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace tome::bench {

// Writes dirty pages back, then drops clean ones; false if not permitted.
inline bool DropPageCache() {
  std::fflush(stdout);
  if (std::system("sync") != 0) return false;
  std::ofstream drop("/proc/sys/vm/drop_caches");
  drop << "3\n";
  return static_cast<bool>(drop.flush());
}

}  // namespace tome::bench
