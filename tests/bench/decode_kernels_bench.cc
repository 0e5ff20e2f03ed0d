// tome_decode_kernels_bench: GPU time of the CUDA kernels of one decode step of a sparse layer
// (sala-9b shapes: 32 query heads in 2 KV groups, d 128, 64-token blocks, top-k 96), each
// launched back to back `--reps` times between two CUDA events, so that the host's issue
// rate does not enter (a decode step is bound by the GPU: docs/PERFORMANCE.md). Also the
// bandwidth of the decode GEMV at the model's shapes and one ResidualRmsNorm row.
//
//   tome_decode_kernels_bench --contexts=65536,1048576 --reps=200
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tome/kernels/cuda/elementwise.h"
#include "tome/kernels/cuda/norm.h"
#include "tome/kernels/cuda/small_matmul.h"
#include "tome/kernels/cuda/sparse_attention.h"

ABSL_FLAG(std::string, contexts, "65536,1048576", "context lengths (tokens) of the step");
ABSL_FLAG(int, reps, 200, "launches timed per kernel");

namespace {

namespace kc = tome::kernels::cuda;
using kc::bf16;

constexpr int64_t kHeads = 32, kGroups = 2, kDim = 128, kBlock = 64;

#define CHECK_CUDA(expr)                                               \
  do {                                                                 \
    if (cudaError_t e_ = (expr); e_ != cudaSuccess) {                  \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                    \
    }                                                                  \
  } while (0)

// A paged matrix of `rows` random rows in one allocation, pages of `rows_per_page`.
struct Paged {
  bf16* data = nullptr;
  const bf16** table = nullptr;
  kc::DevicePagedRows view;
  Paged(int64_t rows, int64_t rows_per_page, uint64_t seed) {
    const int64_t pages = (rows + rows_per_page - 1) / rows_per_page;
    CHECK_CUDA(cudaMalloc(&data, pages * rows_per_page * kDim * sizeof(bf16)));
    CHECK_CUDA(kc::FillRandomNormal(data, kDim, pages * rows_per_page, kDim, seed, 0, 1, 0));
    std::vector<const bf16*> host(pages);
    for (int64_t p = 0; p < pages; ++p) host[p] = data + p * rows_per_page * kDim;
    CHECK_CUDA(cudaMalloc(&table, pages * sizeof(bf16*)));
    CHECK_CUDA(cudaMemcpy(table, host.data(), pages * sizeof(bf16*), cudaMemcpyHostToDevice));
    view = kc::DevicePagedRows{table, rows_per_page, kDim, rows};
  }
  ~Paged() {
    cudaFree(data);
    cudaFree(table);
  }
};

// Mean µs per launch of `launch` over `reps` launches back to back.
template <typename F>
double TimeUs(int reps, F launch) {
  CHECK_CUDA(launch());  // warm-up (module load, smem opt-in)
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < reps; ++i) CHECK_CUDA(launch());
  cudaEventRecord(b);
  CHECK_CUDA(cudaEventSynchronize(b));
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return 1000.0 * ms / reps;
}

void SparseLayer(int64_t n, int reps) {
  tome::kernels::SparseParams sp;
  const int64_t p = n - 1;  // the step's token
  std::vector<Paged*> k, v, k1, k2;
  for (int64_t g = 0; g < kGroups; ++g) {
    k.push_back(new Paged(n, kBlock, 10 + g));
    v.push_back(new Paged(n, kBlock, 20 + g));
    k1.push_back(new Paged(sp.NumK1(n), 4096, 30 + g));
    k2.push_back(new Paged(sp.NumK2(n), 4096, 40 + g));
  }
  std::vector<kc::DevicePagedRows> kv, vv, k1v, k2v;
  for (int64_t g = 0; g < kGroups; ++g) {
    kv.push_back(k[g]->view), vv.push_back(v[g]->view);
    k1v.push_back(k1[g]->view), k2v.push_back(k2[g]->view);
  }
  bf16 *q = nullptr, *out = nullptr;
  int32_t* selected = nullptr;
  CHECK_CUDA(cudaMalloc(&q, kHeads * kDim * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&out, kHeads * kDim * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&selected, kGroups * sp.topk_total * sizeof(int32_t)));
  CHECK_CUDA(kc::FillRandomNormal(q, kHeads * kDim, 1, kHeads * kDim, 7, 0, 1, 0));

  kc::SelectBlocksArgs s;
  s.q = q;
  s.num_tokens = 1;
  s.num_q_heads = kHeads;
  s.num_groups = kGroups;
  s.head_dim = kDim;
  s.q_stride = kHeads * kDim;
  s.first_position = p;
  s.k1 = k1v.data();
  s.k2 = k2v.data();
  s.params = sp;
  s.scale = 1.0f / std::sqrt(float(kDim));
  s.selected = selected;
  const size_t select_bytes = kc::SelectBlocksScratchBytes(s);
  void* select_scratch = nullptr;
  CHECK_CUDA(cudaMalloc(&select_scratch, std::max<size_t>(select_bytes, 256)));
  cublasHandle_t cublas;
  cublasCreate(&cublas);
  const double select_us =
      TimeUs(reps, [&] { return kc::SelectBlocks(s, cublas, select_scratch, select_bytes, 0); });

  kc::BlockSparseArgs a;
  a.q = q;
  a.num_tokens = 1;
  a.num_q_heads = kHeads;
  a.num_groups = kGroups;
  a.head_dim = kDim;
  a.q_stride = kHeads * kDim;
  a.first_position = p;
  a.keys = kv.data();
  a.values = vv.data();
  a.block_size = kBlock;
  a.selected = selected;  // the selection stage 1 made above
  a.topk_total = sp.topk_total;
  a.scale = s.scale;
  a.out = out;
  a.out_stride = kHeads * kDim;
  a.scratch_bytes = kc::BlockSparseScratchBytes(a);  // the most: automatic splits
  CHECK_CUDA(cudaMalloc(&a.scratch, std::max<size_t>(a.scratch_bytes, 256)));
  std::printf("| %lld | %.1f |", static_cast<long long>(n), select_us);
  for (const int most : {0, 32, 16, 8, 4}) {
    a.max_splits = most;
    const double us = TimeUs(reps, [&] { return kc::BlockSparseAttention(a, 0); });
    std::printf(" %.1f (%d) |", us, kc::BlockSparseSplits(a));
  }
  std::printf("\n");
  cublasDestroy(cublas);
  cudaFree(a.scratch);
  cudaFree(select_scratch);
  cudaFree(q);
  cudaFree(out);
  cudaFree(selected);
  for (auto* x : {&k, &v, &k1, &k2}) {
    for (Paged* m : *x) delete m;
  }
}

void Gemv(int64_t n, int64_t k, int reps) {
  bf16 *x = nullptr, *w = nullptr, *y = nullptr;
  CHECK_CUDA(cudaMalloc(&x, k * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&w, n * k * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&y, n * sizeof(bf16)));
  CHECK_CUDA(kc::FillRandomNormal(x, k, 1, k, 1, 0, 1, 0));
  CHECK_CUDA(kc::FillRandomNormal(w, k, n, k, 2, 0, 0.02f, 0));
  std::printf("| %lld x %lld |", static_cast<long long>(n), static_cast<long long>(k));
  for (const int rows_per_cta : {0, 4, 2}) {
    const double us = TimeUs(
        reps, [&] { return kc::SmallMatMul(x, k, w, k, y, false, n, 1, n, k, 0, rows_per_cta); });
    std::printf(" %.1f | %.2f |", us, n * k * 2 / us / 1e6);
  }
  std::printf("\n");
  cudaFree(x);
  cudaFree(w);
  cudaFree(y);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int reps = absl::GetFlag(FLAGS_reps);
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf(
      "%s, %d SMs\n\n| context | SelectBlocks us | BlockSparseAttention us (splits): automatic "
      "| at most 32 | 16 | 8 | 4 |\n|---:|---:|---:|---:|---:|---:|---:|\n",
      prop.name, prop.multiProcessorCount);
  for (absl::string_view item : absl::StrSplit(absl::GetFlag(FLAGS_contexts), ',')) {
    int64_t n = 0;
    if (absl::SimpleAtoi(item, &n) && n > 0) SparseLayer(n, reps);
  }
  // The weights of each shape but o_proj's exceed the 50 MiB L2, so reps read them from HBM.
  std::printf(
      "\n| GEMV (one row) n x k | us (resident grid, the default) | TB/s | us (a CTA per 4 rows) "
      "| TB/s | us (a CTA per 2 rows) | TB/s |\n|---|---:|---:|---:|---:|---:|---:|\n");
  // Lightning in_proj, o_proj; MLP gate_up, down; the LM head.
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
           {16384, 4096}, {4096, 4096}, {32768, 4096}, {4096, 16384}, {73448, 4096}}) {
    Gemv(n, k, reps);
  }
  return 0;
}
