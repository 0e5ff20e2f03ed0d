// Counter-based normal samples shared by the CPU and CUDA backends, so that a model with
// random weights is the same function on both (up to the backends' weight precision).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define TOME_HOST_DEVICE __host__ __device__
#else
#define TOME_HOST_DEVICE
#endif

namespace tome::kernels {

TOME_HOST_DEVICE inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Sample number `index` of the N(0, 1) stream `seed` (Box-Muller on two 24-bit uniforms).
TOME_HOST_DEVICE inline float HashedNormal(uint64_t seed, uint64_t index) {
  const uint64_t bits = SplitMix64(seed ^ SplitMix64(index));
  const float u1 = static_cast<float>((bits >> 40) + 1) * (1.0f / 16777216.0f);  // (0, 1]
  const float u2 = static_cast<float>((bits >> 16) & 0xffffff) * (1.0f / 16777216.0f);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

// FNV-1a: a stable per-tensor seed from its name.
inline uint64_t NameSeed(uint64_t seed, const char* name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (; *name; ++name) h = (h ^ static_cast<unsigned char>(*name)) * 1099511628211ull;
  return h;
}

}  // namespace tome::kernels
