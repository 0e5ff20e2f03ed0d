// The compute backend interface the model is written against: memory plus one method per
// op. CpuBackend (fp32, the reference) and CudaBackend (bf16 activations, fp32 states)
// implement it; the forward pass in model.cc is written once. Ops are ordered on the
// backend's stream: they may run asynchronously until Synchronize() or a copy to the host.
#pragma once

#include <cstdint>
#include <memory>
#include <new>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "paged_buffer.h"
#include "tensor.h"
#include "tome/engine/options.h"
#include "tome/engine/safetensors.h"
#include "tome/kernels/sparse_params.h"

namespace tome::engine {

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceKind kind() const = 0;
  // Element type of activations, KV pages and summaries on this backend.
  virtual DType activation_dtype() const = 0;
  // Element type of weight matrices on this backend.
  virtual DType weight_dtype() const = 0;

  // --- memory -------------------------------------------------------------------------------
  // ResourceExhausted when the backend's memory cannot hold `bytes` more.
  virtual absl::StatusOr<Buffer> Allocate(int64_t bytes) = 0;
  virtual void Free(void* data) = 0;
  // Host memory for data the backend will copy in often (the block cache's host tier). CUDA:
  // pinned and mapped (the same address on every device), so CopyManyFromHost reads it in
  // place; default: heap memory.
  struct HostMemory {
    std::shared_ptr<void> data;
    bool device_readable = false;
  };
  virtual absl::StatusOr<HostMemory> AllocateHost(int64_t bytes) {
    constexpr std::align_val_t kAlign{64};
    return HostMemory{std::shared_ptr<void>(::operator new(static_cast<size_t>(bytes), kAlign),
                                            [](void* p) { ::operator delete(p, kAlign); }),
                      false};
  }
  // Converts a checkpoint tensor into `dst` (weight_dtype, or fp32 for norm vectors when
  // `dst.dtype` says so).
  virtual void UploadTensor(const TensorInfo& src, const Tensor& dst) = 0;
  // Host copies move the raw bytes of the tensor's dtype (no conversion; host is dense).
  // CopyToHost returns once `host` holds the data.
  virtual void CopyFromHost(const Tensor& dst, const void* host) = 0;
  virtual void CopyToHost(const Tensor& src, void* host) = 0;
  // CopyFromHost for many destinations; the host memory may be reused once it returns,
  // except where a piece says it is kept_until_synchronized.
  // Backends where each host copy has a fixed cost (a driver call) stage them as one.
  virtual void CopyManyFromHost(absl::Span<const HostPiece> pieces) {
    for (const HostPiece& p : pieces) CopyFromHost(p.dst, p.host);
  }
  // Converts between fp32 and bf16 where dst and src differ in dtype.
  virtual void Copy(const Tensor& dst, const Tensor& src) = 0;
  // Rows first_row .. first_row + rows.rows - 1 of `dst` ← `rows` (same dtype), in one op
  // however many pages they span. The pages must exist and be dst's own (PagedBuffer::Append
  // prepares them).
  virtual void WriteRows(PagedBuffer& dst, int64_t first_row, const Tensor& rows) = 0;
  virtual void Fill(const Tensor& dst, float value) = 0;
  // dst[r, c] = mean + stddev · HashedNormal(seed, r · cols + c) (tome/kernels/random.h), in
  // dst's dtype: the same values on every backend (models with random weights).
  virtual void FillRandom(const Tensor& dst, uint64_t seed, float mean, float stddev) = 0;
  virtual absl::Status Synchronize() = 0;

  // --- dense ops ----------------------------------------------------------------------------
  // out[t, :] = scale · table[ids[t], :]  (ids on the host).
  virtual void Embedding(const Tensor& table, absl::Span<const int32_t> ids, float scale,
                         const Tensor& out) = 0;
  // y = x · wᵀ  (w is [out_features, in_features]).
  virtual void MatMul(const Tensor& x, const Tensor& w, const Tensor& y) = 0;
  // In-place RMSNorm of each of the `groups` equal column groups of every row.
  virtual void RmsNorm(const Tensor& x, const Tensor& weight, int64_t groups, float eps) = 0;
  // In-place rotate-half RoPE of x viewed as [rows, heads, head_dim], positions first.. .
  virtual void Rope(const Tensor& x, int64_t heads, int64_t head_dim, int64_t first_position,
                    float theta) = 0;
  // RmsNorm of each head (`heads` groups of head_dim) with `weight`, then Rope: a backend may
  // fuse them; the result must equal this default's.
  virtual void HeadRmsNormRope(const Tensor& x, const Tensor& weight, int64_t heads,
                               int64_t head_dim, float eps, int64_t first_position, float theta) {
    RmsNorm(x, weight, heads, eps);
    Rope(x, heads, head_dim, first_position, theta);
  }
  // HeadRmsNormRope of a token's query heads `q` (q_weight) and key heads `k` (k_weight), the
  // same number of each: a backend may do both in one pass; the result must equal this
  // default's.
  virtual void QkHeadRmsNormRope(const Tensor& q, const Tensor& k, const Tensor& q_weight,
                                 const Tensor& k_weight, int64_t heads, int64_t head_dim, float eps,
                                 int64_t first_position, float theta) {
    HeadRmsNormRope(q, q_weight, heads, head_dim, eps, first_position, theta);
    HeadRmsNormRope(k, k_weight, heads, head_dim, eps, first_position, theta);
  }
  virtual void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  // The MLP's first half: gate_up = x · wᵀ (w holds the gate rows, then as many up rows), then
  // out = SiluMul of its halves. A backend may fuse them and leave `gate_up` (scratch of
  // [x.rows, w.rows]) unwritten; `out` must equal this default's.
  virtual void MatMulSiluMul(const Tensor& x, const Tensor& w, const Tensor& gate_up,
                             const Tensor& out) {
    MatMul(x, w, gate_up);
    SiluMul(gate_up.Cols(0, out.cols), gate_up.Cols(out.cols, out.cols), out);
  }
  virtual void SigmoidMul(const Tensor& x, const Tensor& z) = 0;
  // In-place RmsNorm of each whole row (one group), then SigmoidMul by z (Lightning's o_norm
  // and output gate): a backend may fuse them; the result must equal this default's.
  virtual void RmsNormSigmoidMul(const Tensor& x, const Tensor& weight, float eps,
                                 const Tensor& z) {
    RmsNorm(x, weight, 1, eps);
    SigmoidMul(x, z);
  }
  // h += alpha · x
  virtual void AddScaled(const Tensor& h, const Tensor& x, float alpha) = 0;
  // The residual step between blocks: h += alpha · x (x empty: h unchanged), then out =
  // RmsNorm(h) with `weight` (one group). A backend may fuse the three ops into one pass; the
  // result must equal this default's.
  virtual void ResidualRmsNorm(const Tensor& h, const Tensor& x, float alpha, const Tensor& weight,
                               float eps, const Tensor& out) {
    if (x.data != nullptr) AddScaled(h, x, alpha);
    Copy(out, h);
    RmsNorm(out, weight, 1, eps);
  }

  // --- mixers -------------------------------------------------------------------------------
  // Lightning attention of q, k, v viewed as [rows, heads, head_dim]; `state` is
  // [heads · head_dim, head_dim] fp32, updated; `slopes` is a [1, heads] fp32 tensor.
  virtual void Lightning(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                         int64_t head_dim, const Tensor& slopes, float scale,
                         const Tensor& state, const Tensor& out) = 0;
  // Means of summary windows first_window.. of `keys` into out [num_windows, width].
  virtual void WindowMeans(const PagedBuffer& keys, int64_t first_window, int64_t window,
                           int64_t stride, const Tensor& out) = 0;
  // Stage 1 + top-k (kernels::cpu::SelectBlocks semantics) into selected [rows, G·topk] i32
  // and, when `scores` has data, pooled scores [rows, G·topk] fp32.
  virtual void SelectBlocks(const Tensor& q, int64_t q_heads, int64_t head_dim,
                            int64_t first_position, absl::Span<const PagedBuffer> k1,
                            absl::Span<const PagedBuffer> k2,
                            const kernels::SparseParams& params, float scale,
                            const Tensor& selected, const Tensor& scores) = 0;
  // Block-sparse causal attention over the selected blocks (all causal blocks when
  // `selected.data` is null).
  virtual void BlockSparseAttention(const Tensor& q, int64_t q_heads, int64_t head_dim,
                                    int64_t first_position, absl::Span<const PagedBuffer> keys,
                                    absl::Span<const PagedBuffer> values, int64_t block_size,
                                    const Tensor& selected, int64_t topk_total, float scale,
                                    const Tensor& out) = 0;

  // --- collectives (tensor parallelism, shard.h) ---------------------------------------------
  // A backend that is one rank of a tensor-parallel group overrides these (the CUDA backend
  // with NCCL, local_collective.h in process); every rank must call them in the same order.
  // The defaults are those of a group of one.
  // In place: x ← the sum of x over all ranks (same shape on every rank).
  virtual void AllReduceSum(const Tensor& x) { (void)x; }
  // full[:, r·c, (r+1)·c) ← rank r's `local` (c = local.cols; full.cols = ranks · c).
  virtual void AllGatherCols(const Tensor& local, const Tensor& full) { Copy(full, local); }
  // Ends this rank's collectives for good: those in flight return (their results are
  // garbage) and later ones record an Aborted error instead of waiting. Called from any
  // thread (the thread of a rank that failed while the others may wait in a collective for
  // it); the group cannot be used afterwards.
  virtual void AbortCollectives() {}
};

// The CPU backend (fp32 everywhere). `num_threads` <= 0 uses all cores.
std::unique_ptr<Backend> NewCpuBackend(int num_threads);

}  // namespace tome::engine
