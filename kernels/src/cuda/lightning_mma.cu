// Lightning attention for prefill-sized calls, chunk-parallel on tensor cores. Three kernels
// over chunks of 64 tokens (from the call's first token, the last of its true length c):
//   1. per (chunk, head): U = Σ_j γ^(c−1−j) k_j v_jᵀ                      (D × D, fp32)
//   2. per state element, sequentially over chunks: S_prev(chunk) = S; S ← γ^c S + U
//      (the fp32 recurrence, written over U so that U becomes each chunk's incoming state)
//   3. per (chunk, head):
//      o_i = scale (γ^(i+1) q_iᵀ S_prev + Σ_{j≤i} γ^(i−j) (q_i·k_j) v_j)
// q, k and v are bf16, so q·k and products with v are exact on bf16 MMAs with fp32
// accumulators; the fp32 operands (decayed keys, decayed scores, the state) are split into
// bf16 hi + lo parts and multiplied twice, which keeps ~16 bits of mantissa (relative error
// ~1e-5, against the fp32 tolerance of 1e-4 the CPU comparison allows for the state).
#include "common.cuh"
#include "lightning_mma.h"
#include "mma.cuh"

namespace tome::kernels::cuda {
namespace {

constexpr int kChunk = 64;
constexpr int kThreads = 256;            // 8 warps
constexpr int64_t kMinTokens = 128;      // fewer (decode, short calls): the SIMT kernel

// Element (row, col) of a row-major bf16 tile with `kCols` columns, 16-byte chunks of each row
// XOR-swizzled by row (ldmatrix reads eight rows of one chunk without bank conflicts).
template <int kCols>
__device__ __forceinline__ int Swz(int row, int col) {
  return row * kCols + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

// γ^n = exp(−λn) for n = 0..kChunk, evaluated in double as the CPU kernel does.
__device__ __forceinline__ void DecayTable(float lambda, float* decay) {
  for (int n = threadIdx.x; n <= kChunk; n += blockDim.x) {
    decay[n] = static_cast<float>(exp(-static_cast<double>(lambda) * n));
  }
}

// Copies rows [0, c) of a [kChunk][D] bf16 tile (global rows `stride` apart) to shared memory,
// zeros for rows c..kChunk−1.
template <int D>
__device__ __forceinline__ void LoadTile(const bf16* src, int64_t stride, int c, bf16* dst) {
  for (int e = threadIdx.x; e < kChunk * (D / 8); e += kThreads) {
    const int row = e / (D / 8), col = (e % (D / 8)) * 8;
    const bool valid = row < c;
    CpAsync16(dst + Swz<D>(row, col), src + (valid ? row * stride + col : 0), valid);
  }
}

__device__ __forceinline__ void Split(float x, bf16& hi, bf16& lo) {
  hi = __float2bfloat16_rn(x);
  lo = __float2bfloat16_rn(x - __bfloat162float(hi));
}

// Kernel 1: U[h][chunk] = Σ_j γ^(c−1−j) k_j v_jᵀ. Warp w computes rows 16·(w % (D/16)) of
// U and a D / parts column share; A = (decayed K)ᵀ via transposed ldmatrix, hi and lo parts.
template <int D>
__global__ void __launch_bounds__(kThreads) ChunkStatesKernel(const bf16* k, const bf16* v,
                                                              int64_t num_tokens,
                                                              int64_t row_stride,
                                                              const float* slopes, float* u) {
  constexpr int kMTiles = D / 16, kParts = 8 / kMTiles, kCols = D / kParts, kNT = kCols / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* khi = reinterpret_cast<bf16*>(smem);  // [kChunk][D]
  bf16* klo = khi + kChunk * D;
  bf16* vs = klo + kChunk * D;
  float* decay = reinterpret_cast<float*>(vs + kChunk * D);
  const int chunk = blockIdx.x, h = blockIdx.y, num_chunks = gridDim.x;
  const int64_t c0 = int64_t{chunk} * kChunk;
  const int c = static_cast<int>(min(int64_t{kChunk}, num_tokens - c0));
  const int64_t base = c0 * row_stride + int64_t{h} * D;
  LoadTile<D>(v + base, row_stride, c, vs);
  CpAsyncCommit();
  DecayTable(slopes[h], decay);
  __syncthreads();
  for (int e = threadIdx.x; e < kChunk * D / 2; e += kThreads) {
    const int j = e / (D / 2), col = (e % (D / 2)) * 2;
    float x0 = 0.0f, x1 = 0.0f;
    if (j < c) {
      const __nv_bfloat162 kv =
          *reinterpret_cast<const __nv_bfloat162*>(k + base + j * row_stride + col);
      const float w = decay[c - 1 - j];
      x0 = w * __bfloat162float(kv.x);
      x1 = w * __bfloat162float(kv.y);
    }
    Split(x0, khi[Swz<D>(j, col)], klo[Swz<D>(j, col)]);
    Split(x1, khi[Swz<D>(j, col + 1)], klo[Swz<D>(j, col + 1)]);
  }
  CpAsyncWait<0>();
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, mi = lane / 8, mrow = lane % 8;
  const int mt = warp % kMTiles, col0 = (warp / kMTiles) * kCols;
  float acc[kNT][4] = {};
#pragma unroll
  for (int ks = 0; ks < kChunk / 16; ++ks) {
    const int arow = 16 * ks + (mi >> 1) * 8 + mrow, acol = 16 * mt + (mi & 1) * 8;
    uint32_t ahi[4], alo[4];
    LdMatrixX4Trans(ahi, khi + Swz<D>(arow, acol));
    LdMatrixX4Trans(alo, klo + Swz<D>(arow, acol));
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      uint32_t b[4];
      const int vrow = 16 * ks + (mi & 1) * 8 + mrow, vcol = col0 + 16 * np + (mi >> 1) * 8;
      LdMatrixX4Trans(b, vs + Swz<D>(vrow, vcol));
      MmaBf16(acc[2 * np], ahi, b[0], b[1]);
      MmaBf16(acc[2 * np], alo, b[0], b[1]);
      MmaBf16(acc[2 * np + 1], ahi, b[2], b[3]);
      MmaBf16(acc[2 * np + 1], alo, b[2], b[3]);
    }
  }
  const int g = lane / 4, cc = lane % 4;
  float* dst = u + (int64_t{h} * num_chunks + chunk) * D * D;
#pragma unroll
  for (int n = 0; n < kNT; ++n) {
    const int r = 16 * mt + g, col = col0 + 8 * n + 2 * cc;
    *reinterpret_cast<float2*>(dst + r * D + col) = make_float2(acc[n][0], acc[n][1]);
    *reinterpret_cast<float2*>(dst + (r + 8) * D + col) = make_float2(acc[n][2], acc[n][3]);
  }
}

// Kernel 2: the fp32 state recurrence over chunks, one thread per state element. A thread's
// loads do not depend on its recurrence, so they are issued kBatch at a time before the
// batch's stores (one load in flight at a time left the kernel at memory latency: 1.1 ms for
// an 8192-token call against ~0.15 ms at bandwidth).
__global__ void ScanKernel(float* u, int64_t num_chunks, int64_t num_tokens, int64_t num_heads,
                           int64_t dd, const float* slopes, float* state) {
  constexpr int kBatch = 16;
  const int64_t last_len = num_tokens - (num_chunks - 1) * kChunk;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < num_heads * dd;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t h = e / dd, within = e % dd;
    const double lambda = slopes[h];
    const float full = static_cast<float>(exp(-lambda * kChunk));
    const float last = static_cast<float>(exp(-lambda * last_len));
    float s = state[e];
    float* slots = u + h * num_chunks * dd + within;
    for (int64_t ch0 = 0; ch0 < num_chunks; ch0 += kBatch) {
      float add[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        add[i] = ch0 + i < num_chunks ? slots[(ch0 + i) * dd] : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int64_t ch = ch0 + i;
        if (ch < num_chunks) {
          slots[ch * dd] = s;
          s = (ch + 1 < num_chunks ? full : last) * s + add[i];
        }
      }
    }
    state[e] = s;
  }
}

// Kernel 3: outputs. Warp w takes rows 16·(w % 4) of the chunk and half of the columns.
template <int D>
__global__ void __launch_bounds__(kThreads) ChunkOutputKernel(
    const bf16* q, const bf16* k, const bf16* v, int64_t num_tokens, int64_t row_stride,
    const float* slopes, float scale, const float* s_prev, bf16* out, int64_t out_stride) {
  constexpr int kCols = D / 2, kNT = kCols / 8, kSteps = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* qs = reinterpret_cast<bf16*>(smem);  // [kChunk][D]
  bf16* ks = qs + kChunk * D;
  bf16* vs = ks + kChunk * D;
  bf16* shi = vs + kChunk * D;  // [D][D]
  bf16* slo = shi + D * D;
  float* decay = reinterpret_cast<float*>(slo + D * D);
  const int chunk = blockIdx.x, h = blockIdx.y, num_chunks = gridDim.x;
  const int64_t c0 = int64_t{chunk} * kChunk;
  const int c = static_cast<int>(min(int64_t{kChunk}, num_tokens - c0));
  const int64_t base = c0 * row_stride + int64_t{h} * D;
  LoadTile<D>(q + base, row_stride, c, qs);
  LoadTile<D>(k + base, row_stride, c, ks);
  LoadTile<D>(v + base, row_stride, c, vs);
  CpAsyncCommit();
  DecayTable(slopes[h], decay);
  const float* sp = s_prev + (int64_t{h} * num_chunks + chunk) * D * D;
  for (int e = threadIdx.x; e < D * D / 4; e += kThreads) {
    const int r = (4 * e) / D, col = (4 * e) % D;
    const float4 x = *reinterpret_cast<const float4*>(sp + 4 * e);
    Split(x.x, shi[Swz<D>(r, col)], slo[Swz<D>(r, col)]);
    Split(x.y, shi[Swz<D>(r, col + 1)], slo[Swz<D>(r, col + 1)]);
    Split(x.z, shi[Swz<D>(r, col + 2)], slo[Swz<D>(r, col + 2)]);
    Split(x.w, shi[Swz<D>(r, col + 3)], slo[Swz<D>(r, col + 3)]);
  }
  CpAsyncWait<0>();
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, mi = lane / 8, mrow = lane % 8;
  const int mt = warp % 4, col0 = (warp / 4) * kCols;
  const int g = lane / 4, cc = lane % 4, i0 = 16 * mt + g, i1 = i0 + 8;
  uint32_t qf[kSteps][4];
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    LdMatrixX4(qf[s], qs + Swz<D>(16 * mt + (mi & 1) * 8 + mrow, 16 * s + (mi >> 1) * 8));
  }
  // Inter-chunk part: q_iᵀ S_prev, then γ^(i+1) per row.
  float o[kNT][4] = {};
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      const int off = Swz<D>(16 * s + (mi & 1) * 8 + mrow, col0 + 16 * np + (mi >> 1) * 8);
      uint32_t b[4];
      LdMatrixX4Trans(b, shi + off);
      MmaBf16(o[2 * np], qf[s], b[0], b[1]);
      MmaBf16(o[2 * np + 1], qf[s], b[2], b[3]);
      LdMatrixX4Trans(b, slo + off);
      MmaBf16(o[2 * np], qf[s], b[0], b[1]);
      MmaBf16(o[2 * np + 1], qf[s], b[2], b[3]);
    }
  }
  const float d0 = decay[i0 + 1], d1 = decay[i1 + 1];
#pragma unroll
  for (int n = 0; n < kNT; ++n) o[n][0] *= d0, o[n][1] *= d0, o[n][2] *= d1, o[n][3] *= d1;
  // Intra-chunk part: decayed causal scores γ^(i−j) q_i·k_j (fp32), split, times V.
  float sc[8][4] = {};
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
#pragma unroll
    for (int jp = 0; jp < 4; ++jp) {
      uint32_t b[4];
      LdMatrixX4(b, ks + Swz<D>(16 * jp + (mi >> 1) * 8 + mrow, 16 * s + (mi & 1) * 8));
      MmaBf16(sc[2 * jp], qf[s], b[0], b[1]);
      MmaBf16(sc[2 * jp + 1], qf[s], b[2], b[3]);
    }
  }
#pragma unroll
  for (int j8 = 0; j8 < 8; ++j8) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = e < 2 ? i0 : i1, j = 8 * j8 + 2 * cc + (e & 1);
      sc[j8][e] = j <= i ? decay[i - j] * sc[j8][e] : 0.0f;
    }
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    uint32_t phi[4], plo[4];
#pragma unroll
    for (int x = 0; x < 4; ++x) {  // C layout of n-tiles 2kk, 2kk+1 is the A layout of step kk
      const float* pair = &sc[2 * kk + x / 2][(x % 2) * 2];
      bf16 h0, l0, h1, l1;
      Split(pair[0], h0, l0);
      Split(pair[1], h1, l1);
      phi[x] = PackBf16(__bfloat162float(h0), __bfloat162float(h1));
      plo[x] = PackBf16(__bfloat162float(l0), __bfloat162float(l1));
    }
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      uint32_t b[4];
      const int vrow = 16 * kk + (mi & 1) * 8 + mrow, vcol = col0 + 16 * np + (mi >> 1) * 8;
      LdMatrixX4Trans(b, vs + Swz<D>(vrow, vcol));
      MmaBf16(o[2 * np], phi, b[0], b[1]);
      MmaBf16(o[2 * np], plo, b[0], b[1]);
      MmaBf16(o[2 * np + 1], phi, b[2], b[3]);
      MmaBf16(o[2 * np + 1], plo, b[2], b[3]);
    }
  }
#pragma unroll
  for (int n = 0; n < kNT; ++n) {
    const int col = col0 + 8 * n + 2 * cc;
    if (i0 < c) {
      *reinterpret_cast<uint32_t*>(out + (c0 + i0) * out_stride + int64_t{h} * D + col) =
          PackBf16(scale * o[n][0], scale * o[n][1]);
    }
    if (i1 < c) {
      *reinterpret_cast<uint32_t*>(out + (c0 + i1) * out_stride + int64_t{h} * D + col) =
          PackBf16(scale * o[n][2], scale * o[n][3]);
    }
  }
}

template <int D>
cudaError_t Launch(const bf16* q, const bf16* k, const bf16* v, int64_t num_tokens,
                   int64_t num_heads, int64_t row_stride, const float* slopes, float scale,
                   float* state, bf16* out, int64_t out_stride, float* u, cudaStream_t stream) {
  const int64_t num_chunks = CeilDiv(num_tokens, kChunk);
  const size_t states_smem = sizeof(bf16) * 3 * kChunk * D + sizeof(float) * (kChunk + 1);
  const size_t output_smem =
      sizeof(bf16) * (3 * kChunk * D + 2 * D * D) + sizeof(float) * (kChunk + 1);
  if (OptInDynamicSmem<ChunkStatesKernel<D>>() < static_cast<int>(states_smem) ||
      OptInDynamicSmem<ChunkOutputKernel<D>>() < static_cast<int>(output_smem)) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>(num_chunks), static_cast<unsigned>(num_heads));
  ChunkStatesKernel<D><<<grid, kThreads, states_smem, stream>>>(k, v, num_tokens, row_stride,
                                                                slopes, u);
  const int64_t dd = int64_t{D} * D;
  ScanKernel<<<GridFor(num_heads * dd, kThreads), kThreads, 0, stream>>>(
      u, num_chunks, num_tokens, num_heads, dd, slopes, state);
  ChunkOutputKernel<D><<<grid, kThreads, output_smem, stream>>>(
      q, k, v, num_tokens, row_stride, slopes, scale, u, out, out_stride);
  return cudaGetLastError();
}

bool Aligned(const void* p, size_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

}  // namespace

bool LightningUsesTensorCores(int64_t num_tokens, int64_t head_dim, int64_t row_stride,
                              const void* q, const void* k, const void* v) {
  return num_tokens >= kMinTokens && (head_dim == 64 || head_dim == 128) &&
         row_stride % 8 == 0 && Aligned(q, 16) && Aligned(k, 16) && Aligned(v, 16);
}

size_t LightningMmaScratchBytes(int64_t num_tokens, int64_t num_heads, int64_t head_dim) {
  return sizeof(float) * CeilDiv(num_tokens, kChunk) * num_heads * head_dim * head_dim;
}

cudaError_t LightningMma(const bf16* q, const bf16* k, const bf16* v, int64_t num_tokens,
                         int64_t num_heads, int64_t head_dim, int64_t row_stride,
                         const float* slopes, float scale, float* state, bf16* out,
                         int64_t out_stride, void* scratch, size_t scratch_bytes,
                         cudaStream_t stream) {
  if (!LightningUsesTensorCores(num_tokens, head_dim, row_stride, q, k, v) ||
      out_stride % 2 != 0 || !Aligned(out, 4) ||
      scratch_bytes < LightningMmaScratchBytes(num_tokens, num_heads, head_dim)) {
    return cudaErrorInvalidValue;
  }
  float* u = static_cast<float*>(scratch);
  return head_dim == 64 ? Launch<64>(q, k, v, num_tokens, num_heads, row_stride, slopes, scale,
                                     state, out, out_stride, u, stream)
                        : Launch<128>(q, k, v, num_tokens, num_heads, row_stride, slopes,
                                      scale, state, out, out_stride, u, stream);
}

}  // namespace tome::kernels::cuda
