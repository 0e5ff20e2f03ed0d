// The CPU backend: fp32 weights, activations, KV and states; every op is a kernels::cpu call.
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend.h"
#include "tome/kernels/cpu/elementwise.h"
#include "tome/kernels/cpu/gemm.h"
#include "tome/kernels/cpu/lightning.h"
#include "tome/kernels/cpu/norm.h"
#include "tome/kernels/cpu/rope.h"
#include "tome/kernels/cpu/sparse_attention.h"
#include "tome/kernels/random.h"

namespace tome::engine {
namespace {

namespace k = ::tome::kernels::cpu;
using kernels::PagedRows;

// Kernel views of paged buffers, written into reused storage (no allocation per token).
const PagedRows<float>* Views(absl::Span<const PagedBuffer> buffers,
                              std::vector<PagedRows<float>>& views) {
  views.clear();
  for (const PagedBuffer& b : buffers) {
    views.push_back(PagedRows<float>{
        reinterpret_cast<const float* const*>(b.page_pointers().data()), b.rows_per_page(),
        b.width(), b.num_rows()});
  }
  return views.data();
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int num_threads) { k::SetNumThreads(num_threads); }

  DeviceKind kind() const override { return DeviceKind::kCpu; }
  DType activation_dtype() const override { return DType::kF32; }
  DType weight_dtype() const override { return DType::kF32; }

  absl::StatusOr<Buffer> Allocate(int64_t bytes) override {
    const size_t size = (static_cast<size_t>(bytes) + 63) / 64 * 64;
    void* p = size == 0 ? nullptr : std::aligned_alloc(64, size);
    if (size != 0 && p == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("host memory exhausted allocating ", bytes, " bytes"));
    }
    return Buffer(this, p, bytes);
  }
  void Free(void* data) override { std::free(data); }

  void UploadTensor(const TensorInfo& src, const Tensor& dst) override {
    // Checkpoint tensors are dense; dst rows are `stride` apart (fused projections).
    if (dst.contiguous()) {
      SafetensorsCheckpoint::ToFloat32(src, dst.f32());
      return;
    }
    std::vector<float> tmp(src.num_elements());
    SafetensorsCheckpoint::ToFloat32(src, tmp.data());
    CopyFromHost(dst, tmp.data());
  }
  void CopyFromHost(const Tensor& dst, const void* host) override {
    const float* src = static_cast<const float*>(host);
    for (int64_t r = 0; r < dst.rows; ++r) {
      std::memcpy(dst.f32() + r * dst.stride, src + r * dst.cols, dst.cols * DTypeSize(dst.dtype));
    }
  }
  void CopyToHost(const Tensor& src, void* host) override {
    float* out = static_cast<float*>(host);
    for (int64_t r = 0; r < src.rows; ++r) {
      std::memcpy(out + r * src.cols, src.f32() + r * src.stride, src.cols * DTypeSize(src.dtype));
    }
  }
  void Copy(const Tensor& dst, const Tensor& src) override {
    for (int64_t r = 0; r < src.rows; ++r) {
      std::memcpy(dst.f32() + r * dst.stride, src.f32() + r * src.stride,
                  src.cols * DTypeSize(src.dtype));
    }
  }
  void Fill(const Tensor& dst, float value) override {
    for (int64_t r = 0; r < dst.rows; ++r) {
      std::fill(dst.f32() + r * dst.stride, dst.f32() + r * dst.stride + dst.cols, value);
    }
  }
  void FillRandom(const Tensor& dst, uint64_t seed, float mean, float stddev) override {
    for (int64_t r = 0; r < dst.rows; ++r) {
      for (int64_t c = 0; c < dst.cols; ++c) {
        dst.f32()[r * dst.stride + c] =
            mean + stddev * kernels::HashedNormal(seed, static_cast<uint64_t>(r * dst.cols + c));
      }
    }
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }

  void Embedding(const Tensor& table, absl::Span<const int32_t> ids, float scale,
                 const Tensor& out) override {
    k::EmbeddingLookup(table.f32(), ids.data(), static_cast<int64_t>(ids.size()), table.cols,
                       scale, out.f32());
  }
  void MatMul(const Tensor& x, const Tensor& w, const Tensor& y) override {
    k::MatMulTransB(x.f32(), w.f32(), y.f32(), x.rows, w.rows, x.cols, 0.0f, x.stride, w.stride,
                    y.stride);
  }
  void RmsNorm(const Tensor& x, const Tensor& weight, int64_t groups, float eps) override {
    k::RmsNorm(x.f32(), weight.f32(), x.rows, groups, x.cols / groups, x.stride, eps);
  }
  void Rope(const Tensor& x, int64_t heads, int64_t head_dim, int64_t first_position,
            float theta) override {
    k::ApplyRope(x.f32(), x.rows, heads, head_dim, x.stride, first_position, theta);
  }
  void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    k::SiluMul(gate.f32(), up.f32(), gate.stride, out.f32(), out.stride, gate.rows, gate.cols);
  }
  void SigmoidMul(const Tensor& x, const Tensor& z) override {
    k::SigmoidMul(x.f32(), x.stride, z.f32(), z.stride, x.rows, x.cols);
  }
  void AddScaled(const Tensor& h, const Tensor& x, float alpha) override {
    k::AddScaled(h.f32(), x.f32(), alpha, h.num_elements());
  }

  void Lightning(const Tensor& q, const Tensor& k_, const Tensor& v, int64_t heads,
                 int64_t head_dim, const Tensor& slopes, float scale, const Tensor& state,
                 const Tensor& out) override {
    k::LightningAttention(q.f32(), k_.f32(), v.f32(), q.rows, heads, head_dim, q.stride,
                          slopes.f32(), scale, state.f32(), out.f32(), out.stride);
  }
  void WriteRows(PagedBuffer& dst, int64_t first_row, const Tensor& rows) override {
    WriteRowsPageByPage(*this, dst, first_row, rows);
  }
  void WindowMeans(const PagedBuffer& keys, int64_t first_window, int64_t window,
                   int64_t stride, const Tensor& out) override {
    k::WindowMeans(*Views(absl::MakeConstSpan(&keys, 1), views_a_), first_window, out.rows,
                   window, stride, out.f32());
  }
  void SelectBlocks(const Tensor& q, int64_t q_heads, int64_t head_dim, int64_t first_position,
                    absl::Span<const PagedBuffer> k1, absl::Span<const PagedBuffer> k2,
                    const kernels::SparseParams& params, float scale, const Tensor& selected,
                    const Tensor& scores) override {
    k::SelectBlocks(q.f32(), q.rows, q_heads, static_cast<int64_t>(k1.size()), head_dim,
                    q.stride, first_position, Views(k1, views_a_), Views(k2, views_b_), params,
                    scale,
                    selected.i32(), scores.data ? scores.f32() : nullptr);
  }
  void BlockSparseAttention(const Tensor& q, int64_t q_heads, int64_t head_dim,
                            int64_t first_position, absl::Span<const PagedBuffer> keys,
                            absl::Span<const PagedBuffer> values, int64_t block_size,
                            const Tensor& selected, int64_t topk_total, float scale,
                            const Tensor& out) override {
    k::BlockSparseAttention(q.f32(), q.rows, q_heads, static_cast<int64_t>(keys.size()),
                            head_dim, q.stride, first_position, Views(keys, views_a_),
                            Views(values, views_b_), block_size,
                            selected.data ? selected.i32() : nullptr, topk_total, scale,
                            out.f32(), out.stride);
  }

 private:
  // Backend ops run one at a time (the engine serialises forward passes).
  std::vector<PagedRows<float>> views_a_, views_b_;
};

}  // namespace

std::unique_ptr<Backend> NewCpuBackend(int num_threads) {
  return std::make_unique<CpuBackend>(num_threads);
}

}  // namespace tome::engine
