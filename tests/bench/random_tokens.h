// Deterministic pseudo-random token ids for the benchmarks (xorshift64), avoiding the
// special ids below 3.
#pragma once

#include <cstdint>
#include <vector>

namespace tome::bench {

inline std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> tokens(n);
  for (auto& t : tokens) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    t = 3 + static_cast<int32_t>(seed % (vocab - 3));
  }
  return tokens;
}

}  // namespace tome::bench
