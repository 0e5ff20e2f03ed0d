// Warp-level tensor-core primitives (sm_80+ PTX, run on Hopper): 16-byte asynchronous copies
// to shared memory, ldmatrix and the bf16 m16n8k16 MMA with fp32 accumulators (internal).
//
// Fragment layouts of mma.m16n8k16 (lane = 4·g + c):
//   A 16×16 row-major, 4 regs of bf16x2: rows g / g+8, columns 2c..2c+1 / 2c+8..2c+9
//   B 16×8 (k × n), 2 regs: k rows 2c..2c+1 / 2c+8..2c+9, column g
//   C 16×8 fp32, 4 regs: row g columns 2c, 2c+1, then row g+8 the same columns
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes to shared memory, or writes 16 zero bytes when !valid (src is not read).
__device__ __forceinline__ void CpAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddress(dst)),
               "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n"); }
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Four 8×8 bf16 matrices; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddress(row)));
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddress(row)));
}

// c += a · b (bf16 inputs, fp32 accumulators).
__device__ __forceinline__ void MmaBf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                       uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Element offset of 8-column chunk `chunk` of row `row` in a [rows][D] bf16 tile in shared
// memory. Chunks are XOR-swizzled by row so that ldmatrix's eight row reads hit eight
// different bank groups.
template <int D>
__device__ __forceinline__ int Swizzled(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

// s = A·tileᵀ: this warp's m16 A fragments (D/16 k-steps, from registers) against the 64 rows
// of a swizzled [64][D] tile as B (8 n-tiles of 8 rows), fp32.
template <int D>
__device__ __forceinline__ void MmaRowsByTile64(const uint32_t (&a)[D / 16][4], const bf16* tile,
                                                float (&s)[8][4]) {
  const int lane = threadIdx.x % 32, mi = lane / 8, mrow = lane % 8;
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
    for (int jp = 0; jp < 4; ++jp) {
      uint32_t r[4];
      LdMatrixX4(r, tile + Swizzled<D>(16 * jp + (mi >> 1) * 8 + mrow, 2 * ks + (mi & 1)));
      MmaBf16(s[2 * jp], a[ks], r[0], r[1]);
      MmaBf16(s[2 * jp + 1], a[ks], r[2], r[3]);
    }
  }
}

// A-fragments of one query's (or token's) heads (rows gi and gi + 8 of each m16 tile of k = 16
// dims); q points at the group's first head, heads D apart.
template <int D>
__device__ __forceinline__ void LoadQuery(const bf16* q, int heads, bool has_query,
                                          uint32_t (&qf)[D / 16][4]) {
  const int lane = threadIdx.x % 32, gi = lane / 4, c = lane % 4;
  const bool row0 = has_query && gi < heads, row1 = has_query && gi + 8 < heads;
  const bf16* q0 = q + int64_t{gi} * D + 2 * c;
  const bf16* q1 = q0 + 8 * D;
#pragma unroll
  for (int s = 0; s < D / 16; ++s) {
    qf[s][0] = row0 ? *reinterpret_cast<const uint32_t*>(q0 + 16 * s) : 0u;
    qf[s][1] = row1 ? *reinterpret_cast<const uint32_t*>(q1 + 16 * s) : 0u;
    qf[s][2] = row0 ? *reinterpret_cast<const uint32_t*>(q0 + 16 * s + 8) : 0u;
    qf[s][3] = row1 ? *reinterpret_cast<const uint32_t*>(q1 + 16 * s + 8) : 0u;
  }
}

// Two floats as one bf16x2 register (lo in the low half: the lower column).
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

}  // namespace tome::kernels::cuda
