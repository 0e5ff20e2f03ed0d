// The CUDA backend: every op is one kernels::cuda call (or cuBLAS) on the backend's stream.
//
// Host copies move raw bytes of the tensor's dtype (no conversion): CopyFromHost reads and
// CopyToHost writes `rows · cols` dense elements of dst/src.dtype. Callers that want fp32
// from bf16 activations convert themselves (model.cc). Copy converts between fp32 and bf16
// when the two tensors differ in dtype.
#include "cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifdef TOME_HAVE_NCCL
#include <nccl.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_status.h"
#include "cuda/op_timer.h"
#include "cuda/page_tables.h"
#include "tome/base/status_macros.h"
#include "tome/kernels/cuda/copy_pieces.h"
#include "tome/kernels/cuda/elementwise.h"
#include "tome/kernels/cuda/gemm.h"
#include "tome/kernels/cuda/lightning.h"
#include "tome/kernels/cuda/norm.h"
#include "tome/kernels/cuda/rope.h"
#include "tome/kernels/cuda/small_matmul.h"
#include "tome/kernels/cuda/sparse_attention.h"

namespace tome::engine {

struct NcclGroup {
#ifdef TOME_HAVE_NCCL
  ~NcclGroup() {
    for (ncclComm_t c : comms) {
      if (c) ncclCommAbort(c);  // a rank whose backend was never created
    }
  }
  std::vector<ncclComm_t> comms;  // rank i's; each owned by its backend once created
#endif
  int world = 0;
  int first_device = 0;
};

namespace {

#ifdef TOME_HAVE_NCCL
absl::Status NcclStatus(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("NCCL ", what, ": ", ncclGetErrorString(r)));
}
ncclDataType_t NcclType(DType t) {
  return t == DType::kBF16 ? ncclBfloat16 : t == DType::kF32 ? ncclFloat32 : ncclInt32;
}
#endif

namespace kc = ::tome::kernels::cuda;
using kc::bf16;

bf16* B16(const Tensor& t) { return static_cast<bf16*>(t.data); }

class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(
      int device, std::shared_ptr<NcclGroup> group = nullptr, int rank = 0) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count) {
      cudaGetLastError();
      return absl::FailedPreconditionError(
          absl::StrCat("CUDA device ", device, " is not available (", count, " found)"));
    }
    std::unique_ptr<CudaBackend> b(new CudaBackend(device));
#ifdef TOME_HAVE_NCCL
    if (group) {
      b->comm_ = std::exchange(group->comms[rank], nullptr);
      b->world_ = group->world;
      b->first_device_ = group->first_device;
    }
#endif
    TOME_RETURN_IF_ERROR(b->Init());
    return std::unique_ptr<Backend>(std::move(b));
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
#ifdef TOME_HAVE_NCCL
    if (comm_) {
      if (stream_) cudaStreamSynchronize(stream_);
      std::lock_guard<std::mutex> lock(comm_mu_);
      if (!comm_aborted_and_freed_) ncclCommDestroy(comm_);
      comm_ = nullptr;
    }
#endif
    if (stream_) cudaStreamSynchronize(stream_);
    if (cublas_workspace_) cudaFree(cublas_workspace_);
    timer_.reset();
    tables_.reset();
    if (scratch_) cudaFreeAsync(scratch_, stream_);
    for (const InvFreqTable& t : inv_freq_) cudaFreeAsync(t.table, stream_);
    if (cublas_) cublasDestroy(cublas_);
    if (staging_free_) cudaEventDestroy(staging_free_);
    if (staging_host_) cudaFreeHost(staging_host_);
    if (stream_) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
  }

  DeviceKind kind() const override { return DeviceKind::kCuda; }
  DType activation_dtype() const override { return DType::kBF16; }
  DType weight_dtype() const override { return DType::kBF16; }

  // --- memory -------------------------------------------------------------------------------
  absl::StatusOr<Buffer> Allocate(int64_t bytes) override {
    if (bytes <= 0) return Buffer(this, nullptr, 0);
    const DeviceScope bound = Bind();
    if (static_cast<uint64_t>(bytes) > total_memory_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "allocating ", bytes, " bytes: more than the GPU's ", total_memory_, " bytes"));
    }
    if (world_ > 1) ReserveBeforeAllocating(static_cast<size_t>(bytes));
    void* p = nullptr;
    // Stream-ordered pool: pages (16 KiB each for 64 x 128 bf16) come without a device sync.
    const cudaError_t e = cudaMallocAsync(&p, static_cast<size_t>(bytes), stream_);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear it, so that later launches do not report it
      return CudaStatus(e, absl::StrCat("allocating ", bytes, " bytes of GPU memory"));
    }
    return Buffer(this, p, bytes);
  }
  void Free(void* data) override {
    const DeviceScope bound = Bind();  // sequences may be freed from any thread
    Check(cudaFreeAsync(data, stream_), "free");
  }

  void UploadTensor(const TensorInfo& src, const Tensor& dst) override {
    ScopedOp op(*timer_, "UploadTensor");
    if (!Expect(src.num_elements() == dst.num_elements(), "UploadTensor: element count")) return;
    if (dst.dtype == DType::kBF16 && src.dtype == TensorDType::kBF16) {
      CopyFromHost(dst, src.data);  // no conversion: copy straight from the mapping
      return;
    }
    std::vector<float> f32(src.num_elements());
    SafetensorsCheckpoint::ToFloat32(src, f32.data());
    if (dst.dtype == DType::kF32) {
      CopyFromHost(dst, f32.data());
      return;
    }
    if (!Expect(dst.dtype == DType::kBF16, "UploadTensor: destination dtype")) return;
    std::vector<uint16_t> b16(f32.size());
    for (size_t i = 0; i < f32.size(); ++i) b16[i] = FloatToBFloat16(f32[i]);
    CopyFromHost(dst, b16.data());
  }

  void CopyFromHost(const Tensor& dst, const void* host) override {
    if (dst.num_elements() == 0) return;
    Drain();  // pageable memory: see Drain
    const size_t row = dst.cols * DTypeSize(dst.dtype);
    // From pageable memory the source is staged before the call returns.
    Check(cudaMemcpy2DAsync(dst.data, dst.stride * DTypeSize(dst.dtype), host, row, row,
                            dst.rows, cudaMemcpyHostToDevice, stream_),
          "CopyFromHost");
  }
  absl::StatusOr<HostMemory> AllocateHost(int64_t bytes) override {
    const DeviceScope bound = Bind();
    Drain();  // pinning maps memory (see Drain)
    void* p = nullptr;
    if (const cudaError_t e = cudaHostAlloc(&p, static_cast<size_t>(std::max<int64_t>(bytes, 1)),
                                            cudaHostAllocMapped | cudaHostAllocPortable);
        e != cudaSuccess) {
      cudaGetLastError();  // not an error of the stream
      return CudaStatus(e, absl::StrCat("pinning ", bytes,
                                        " bytes of host memory for the block "
                                        "cache (lower --host_block_cache_mb)"));
    }
    // In place only where the device sees the host address itself (unified addressing).
    void* device = nullptr;
    const bool same = cudaHostGetDevicePointer(&device, p, 0) == cudaSuccess && device == p;
    cudaGetLastError();
    return HostMemory{std::shared_ptr<void>(p, [](void* q) { cudaFreeHost(q); }), same};
  }
  // One transfer for all pieces: one kernel reads them from mapped pinned host memory and
  // scatters them (a driver copy from pageable memory costs ~10 µs a call; a cold question
  // over a 1M-token document fetches tens of thousands of 16 KiB pieces). Pieces already in
  // such memory (device_readable) are read in place; the others are packed into a staging
  // buffer first.
  void CopyManyFromHost(absl::Span<const HostPiece> pieces) override {
    size_t total = AlignTo16(pieces.size() * sizeof(kc::PieceCopy));
    bool wait_for_reads = false;  // of device-readable pieces the caller may change at once
    for (const HostPiece& p : pieces) {
      if (!p.dst.contiguous()) return Backend::CopyManyFromHost(pieces);  // none of ours
      if (p.device_readable) {
        wait_for_reads |= !p.kept_until_synchronized;
      } else {
        total += AlignTo16(p.dst.num_elements() * DTypeSize(p.dst.dtype));
      }
    }
    if (pieces.empty()) return;
    const DeviceScope bound = Bind();
    char* host = StagingFor(total);
    if (host == nullptr) return Backend::CopyManyFromHost(pieces);  // a copy each, pageable
    char* device = static_cast<char*>(staging_device_);
    auto* list = reinterpret_cast<kc::PieceCopy*>(host);
    size_t offset = AlignTo16(pieces.size() * sizeof(kc::PieceCopy));
    for (size_t i = 0; i < pieces.size(); ++i) {
      const size_t bytes = pieces[i].dst.num_elements() * DTypeSize(pieces[i].dst.dtype);
      if (pieces[i].device_readable) {
        list[i] = {pieces[i].dst.data, pieces[i].host, static_cast<int64_t>(bytes)};
        continue;
      }
      std::memcpy(host + offset, pieces[i].host, bytes);
      list[i] = {pieces[i].dst.data, device + offset, static_cast<int64_t>(bytes)};
      offset += AlignTo16(bytes);
    }
    Check(kc::CopyPieces(reinterpret_cast<const kc::PieceCopy*>(device),
                         static_cast<int64_t>(pieces.size()), stream_),
          "CopyManyFromHost");
    Check(cudaEventRecord(staging_free_, stream_), "CopyManyFromHost");
    // The caller may reuse its host memory once this returns: wait for the in-place reads.
    if (wait_for_reads) Check(cudaEventSynchronize(staging_free_), "CopyManyFromHost");
  }
  void CopyToHost(const Tensor& src, void* host) override {
    if (src.num_elements() == 0) return;
    Drain();  // pageable memory: see Drain
    const size_t row = src.cols * DTypeSize(src.dtype);
    Check(cudaMemcpy2DAsync(host, row, src.data, src.stride * DTypeSize(src.dtype), row,
                            src.rows, cudaMemcpyDeviceToHost, stream_),
          "CopyToHost");
    Check(cudaStreamSynchronize(stream_), "CopyToHost");  // the caller reads `host` next
  }
  void Copy(const Tensor& dst, const Tensor& src) override {
    ScopedOp op(*timer_, "Copy");
    if (!Expect(dst.rows == src.rows && dst.cols == src.cols, "Copy: shapes")) return;
    if (src.num_elements() == 0) return;
    if (dst.dtype == src.dtype) {
      const size_t es = DTypeSize(src.dtype);
      Check(cudaMemcpy2DAsync(dst.data, dst.stride * es, src.data, src.stride * es,
                              src.cols * es, src.rows, cudaMemcpyDeviceToDevice, stream_),
            "Copy");
    } else if (src.dtype == DType::kF32 && dst.dtype == DType::kBF16) {
      Check(kc::Convert(src.f32(), src.stride, B16(dst), dst.stride, src.rows, src.cols, stream_),
            "Copy (fp32 to bf16)");
    } else if (src.dtype == DType::kBF16 && dst.dtype == DType::kF32) {
      Check(kc::Convert(B16(src), src.stride, dst.f32(), dst.stride, src.rows, src.cols, stream_),
            "Copy (bf16 to fp32)");
    } else {
      Expect(false, "Copy: unsupported dtype pair");
    }
  }
  void Fill(const Tensor& dst, float value) override {
    uint32_t pattern = 0;
    switch (dst.dtype) {
      case DType::kF32:
        std::memcpy(&pattern, &value, 4);
        break;
      case DType::kBF16:
        pattern = FloatToBFloat16(value);
        break;
      case DType::kI32:
        pattern = static_cast<uint32_t>(static_cast<int32_t>(value));
        break;
    }
    Check(kc::FillPattern(dst.data, static_cast<int>(DTypeSize(dst.dtype)), dst.stride, dst.rows,
                          dst.cols, pattern, stream_),
          "Fill");
  }
  void FillRandom(const Tensor& dst, uint64_t seed, float mean, float stddev) override {
    if (dst.dtype == DType::kBF16) {
      Check(kc::FillRandomNormal(B16(dst), dst.stride, dst.rows, dst.cols, seed, mean, stddev,
                                 stream_),
            "FillRandom");
    } else if (Expect(dst.dtype == DType::kF32, "FillRandom: dtype")) {
      Check(kc::FillRandomNormal(dst.f32(), dst.stride, dst.rows, dst.cols, seed, mean, stddev,
                                 stream_),
            "FillRandom");
    }
  }
  absl::Status Synchronize() override {
    const DeviceScope bound = Bind();
    Check(cudaStreamSynchronize(stream_), "Synchronize");
    return std::exchange(error_, absl::OkStatus());
  }

  // --- dense ops ----------------------------------------------------------------------------
  void Embedding(const Tensor& table, absl::Span<const int32_t> ids, float scale,
                 const Tensor& out) override {
    // Every forward call starts here: its size names the phase its ops are timed under.
    if (timer_->enabled()) {
      timer_->SetPhase(ids.size() <= 16 ? "calls of <= 16 tokens (decode)"
                                        : "calls of > 16 tokens (prefill)");
    }
    ScopedOp op(*timer_, "Embedding");
    if (!Expect(table.dtype == out.dtype, "Embedding: dtypes")) return;
    const int64_t n = static_cast<int64_t>(ids.size());
    auto scratch = Scratch(n * sizeof(int32_t));
    if (!scratch.ok()) return Check(scratch.status());
    int32_t* dev_ids = static_cast<int32_t*>(*scratch);
    Drain();  // pageable memory: see Drain
    Check(cudaMemcpyAsync(dev_ids, ids.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice,
                          stream_),
          "Embedding ids");
    if (out.dtype == DType::kBF16) {
      Check(kc::Embedding(B16(table), dev_ids, n, table.cols, scale, B16(out), out.stride,
                          stream_),
            "Embedding");
    } else {
      Check(kc::Embedding(table.f32(), dev_ids, n, table.cols, scale, out.f32(), out.stride,
                          stream_),
            "Embedding");
    }
  }

  void MatMul(const Tensor& x, const Tensor& w, const Tensor& y) override {
    ScopedOp op(*timer_, "MatMul");
    if (!Expect(x.dtype == w.dtype && x.dtype != DType::kI32 && y.dtype != DType::kI32 &&
                    x.cols == w.cols && y.rows == x.rows && y.cols == w.rows,
                "MatMul: shapes or dtypes")) {
      return;
    }
    if (x.dtype == DType::kBF16 &&
        kc::SmallMatMulApplies(x.data, x.stride, w.data, w.stride, x.rows, x.cols)) {
      Check(kc::SmallMatMul(B16(x), x.stride, B16(w), w.stride, y.data, y.dtype == DType::kF32,
                            y.stride, x.rows, w.rows, x.cols, stream_),
            "MatMul");
      return;
    }
    auto type = [](DType t) {
      return t == DType::kBF16 ? kc::GemmType::kBF16 : kc::GemmType::kF32;
    };
    Check(kc::MatMulTransB(cublas_, x.data, w.data, type(x.dtype), y.data, type(y.dtype), x.rows,
                           w.rows, x.cols, x.stride, w.stride, y.stride),
          "MatMul");
  }

  void RmsNorm(const Tensor& x, const Tensor& weight, int64_t groups, float eps) override {
    ScopedOp op(*timer_, "RmsNorm");
    if (!Expect(weight.dtype == DType::kF32 && x.cols % groups == 0, "RmsNorm: weight")) return;
    const int64_t n = x.cols / groups;
    if (x.dtype == DType::kBF16) {
      Check(kc::RmsNorm(B16(x), weight.f32(), x.rows, groups, n, x.stride, eps, stream_),
            "RmsNorm");
    } else {
      Check(kc::RmsNorm(x.f32(), weight.f32(), x.rows, groups, n, x.stride, eps, stream_),
            "RmsNorm");
    }
  }

  void Rope(const Tensor& x, int64_t heads, int64_t head_dim, int64_t first_position,
            float theta) override {
    ScopedOp op(*timer_, "Rope");
    auto inv_freq = InvFreq(theta, head_dim);
    if (!inv_freq.ok()) return Check(inv_freq.status());
    if (x.dtype == DType::kBF16) {
      Check(kc::Rope(B16(x), x.rows, heads, head_dim, x.stride, first_position, *inv_freq,
                     stream_),
            "Rope");
    } else {
      Check(kc::Rope(x.f32(), x.rows, heads, head_dim, x.stride, first_position, *inv_freq,
                     stream_),
            "Rope");
    }
  }

  void HeadRmsNormRope(const Tensor& x, const Tensor& weight, int64_t heads, int64_t head_dim,
                       float eps, int64_t first_position, float theta) override {
    if (x.dtype != DType::kBF16 || weight.dtype != DType::kF32 || x.cols != heads * head_dim ||
        weight.num_elements() != head_dim || !kc::HeadNormRopeFuses(head_dim)) {
      return Backend::HeadRmsNormRope(x, weight, heads, head_dim, eps, first_position, theta);
    }
    ScopedOp op(*timer_, "HeadRmsNormRope");
    auto inv_freq = InvFreq(theta, head_dim);
    if (!inv_freq.ok()) return Check(inv_freq.status());
    Check(kc::HeadNormRope(B16(x), weight.f32(), x.rows, heads, head_dim, x.stride, eps,
                           first_position, *inv_freq, stream_),
          "HeadRmsNormRope");
  }

  void QkHeadRmsNormRope(const Tensor& q, const Tensor& k, const Tensor& q_weight,
                         const Tensor& k_weight, int64_t heads, int64_t head_dim, float eps,
                         int64_t first_position, float theta) override {
    // One launch when the keys are the columns right after the queries (the model's layout).
    const bool adjacent = q.dtype == DType::kBF16 && k.dtype == DType::kBF16 &&
                          k.data == B16(q) + q.cols && k.stride == q.stride && k.rows == q.rows &&
                          q.cols == heads * head_dim && k.cols == q.cols;
    const bool weights = q_weight.dtype == DType::kF32 && k_weight.dtype == DType::kF32 &&
                         q_weight.num_elements() == head_dim && k_weight.num_elements() == head_dim;
    if (!adjacent || !weights || !kc::HeadNormRopeFuses(head_dim)) {
      return Backend::QkHeadRmsNormRope(q, k, q_weight, k_weight, heads, head_dim, eps,
                                        first_position, theta);
    }
    ScopedOp op(*timer_, "HeadRmsNormRope");
    auto inv_freq = InvFreq(theta, head_dim);
    if (!inv_freq.ok()) return Check(inv_freq.status());
    Check(kc::QkHeadNormRope(B16(q), q_weight.f32(), k_weight.f32(), q.rows, heads, head_dim,
                             q.stride, eps, first_position, *inv_freq, stream_),
          "QkHeadRmsNormRope");
  }

  void MatMulSiluMul(const Tensor& x, const Tensor& w, const Tensor& gate_up,
                     const Tensor& out) override {
    const bool fuses = x.dtype == DType::kBF16 && w.dtype == DType::kBF16 &&
                       out.dtype == DType::kBF16 && x.cols == w.cols && w.rows == 2 * out.cols &&
                       out.rows == x.rows &&
                       kc::SmallMatMulApplies(x.data, x.stride, w.data, w.stride, x.rows, x.cols);
    if (!fuses) return Backend::MatMulSiluMul(x, w, gate_up, out);
    ScopedOp op(*timer_, "MatMulSiluMul");
    Check(kc::SmallMatMulSiluMul(B16(x), x.stride, B16(w), w.stride, B16(out), out.stride, x.rows,
                                 out.cols, x.cols, stream_),
          "MatMulSiluMul");
  }

  void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    ScopedOp op(*timer_, "SiluMul");
    if (!Expect(gate.stride == up.stride && gate.dtype == out.dtype, "SiluMul: layout")) return;
    if (gate.dtype == DType::kBF16) {
      Check(kc::SiluMul(B16(gate), B16(up), gate.stride, B16(out), out.stride, gate.rows,
                        gate.cols, stream_),
            "SiluMul");
    } else {
      Check(kc::SiluMul(gate.f32(), up.f32(), gate.stride, out.f32(), out.stride, gate.rows,
                        gate.cols, stream_),
            "SiluMul");
    }
  }

  void SigmoidMul(const Tensor& x, const Tensor& z) override {
    ScopedOp op(*timer_, "SigmoidMul");
    if (!Expect(x.dtype == z.dtype, "SigmoidMul: dtypes")) return;
    if (x.dtype == DType::kBF16) {
      Check(kc::SigmoidMul(B16(x), x.stride, B16(z), z.stride, x.rows, x.cols, stream_),
            "SigmoidMul");
    } else {
      Check(kc::SigmoidMul(x.f32(), x.stride, z.f32(), z.stride, x.rows, x.cols, stream_),
            "SigmoidMul");
    }
  }

  void RmsNormSigmoidMul(const Tensor& x, const Tensor& weight, float eps,
                         const Tensor& z) override {
    const bool fuses =
        x.dtype == DType::kBF16 && z.dtype == DType::kBF16 && weight.dtype == DType::kF32 &&
        weight.num_elements() == x.cols && z.rows == x.rows && z.cols == x.cols &&
        kc::RmsNormSigmoidMulFuses(B16(x), x.stride, weight.f32(), x.cols, B16(z), z.stride);
    if (!fuses) return Backend::RmsNormSigmoidMul(x, weight, eps, z);
    ScopedOp op(*timer_, "RmsNormSigmoidMul");
    Check(kc::RmsNormSigmoidMul(B16(x), x.stride, weight.f32(), x.rows, x.cols, B16(z), z.stride,
                                eps, stream_),
          "RmsNormSigmoidMul");
  }

  void ResidualRmsNorm(const Tensor& h, const Tensor& x, float alpha, const Tensor& weight,
                       float eps, const Tensor& out) override {
    const bool fuses =
        h.dtype == DType::kBF16 && out.dtype == DType::kBF16 && weight.dtype == DType::kF32 &&
        weight.num_elements() == h.cols && out.rows == h.rows && out.cols == h.cols &&
        (x.data == nullptr || (x.dtype == DType::kBF16 && x.rows == h.rows && x.cols == h.cols)) &&
        kc::ResidualRmsNormFuses(B16(h), h.stride, x.data ? B16(x) : nullptr, x.stride,
                                 weight.f32(), h.cols, B16(out), out.stride);
    if (!fuses) return Backend::ResidualRmsNorm(h, x, alpha, weight, eps, out);
    ScopedOp op(*timer_, "ResidualRmsNorm");
    Check(kc::ResidualRmsNorm(B16(h), h.stride, x.data ? B16(x) : nullptr, x.stride, alpha,
                              weight.f32(), h.rows, h.cols, B16(out), out.stride, eps, stream_),
          "ResidualRmsNorm");
  }

  void AddScaled(const Tensor& h, const Tensor& x, float alpha) override {
    ScopedOp op(*timer_, "AddScaled");
    if (!Expect(h.dtype == x.dtype && h.rows == x.rows && h.cols == x.cols, "AddScaled")) return;
    if (h.dtype == DType::kBF16) {
      Check(kc::AddScaled(B16(h), h.stride, B16(x), x.stride, alpha, h.rows, h.cols, stream_),
            "AddScaled");
    } else {
      Check(kc::AddScaled(h.f32(), h.stride, x.f32(), x.stride, alpha, h.rows, h.cols, stream_),
            "AddScaled");
    }
  }

  // --- mixers -------------------------------------------------------------------------------
  void Lightning(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 int64_t head_dim, const Tensor& slopes, float scale, const Tensor& state,
                 const Tensor& out) override {
    ScopedOp op(*timer_, "Lightning");
    if (!Expect(q.dtype == DType::kBF16 && k.stride == q.stride && v.stride == q.stride &&
                    out.dtype == DType::kBF16 && state.dtype == DType::kF32 &&
                    slopes.dtype == DType::kF32,
                "Lightning: layout")) {
      return;
    }
    const size_t bytes = kc::LightningScratchBytes(q.rows, heads, head_dim, q.stride, B16(q),
                                                   B16(k), B16(v));
    auto scratch = Scratch(bytes);
    if (!scratch.ok()) return Check(scratch.status());
    Check(kc::Lightning(B16(q), B16(k), B16(v), q.rows, heads, head_dim, q.stride, slopes.f32(),
                        scale, state.f32(), B16(out), out.stride, *scratch, bytes, stream_),
          "Lightning");
  }

  void WriteRows(PagedBuffer& dst, int64_t first_row, const Tensor& rows) override {
    ScopedOp op(*timer_, "WriteRows");
    if (dst.dtype() != DType::kBF16 || rows.dtype != DType::kBF16) {
      return WriteRowsPageByPage(*this, dst, first_row, rows);
    }
    // One kernel through the page table instead of a copy per page (prefill appends 128
    // pages per KV group and chunk).
    auto view = tables_->View(dst);
    if (!view.ok()) return Check(view.status());
    Check(kc::ScatterRows(*view, first_row, rows.rows, B16(rows), rows.stride, stream_),
          "WriteRows");
  }
  void WindowMeans(const PagedBuffer& keys, int64_t first_window, int64_t window,
                   int64_t stride, const Tensor& out) override {
    ScopedOp op(*timer_, "WindowMeans");
    if (!Expect(keys.dtype() == DType::kBF16 && out.dtype == DType::kBF16, "WindowMeans")) {
      return;
    }
    auto view = tables_->View(keys);
    if (!view.ok()) return Check(view.status());
    Check(kc::WindowMeans(*view, first_window, out.rows, window, stride, B16(out), out.stride,
                          stream_),
          "WindowMeans");
  }

  void SelectBlocks(const Tensor& q, int64_t q_heads, int64_t head_dim, int64_t first_position,
                    absl::Span<const PagedBuffer> k1, absl::Span<const PagedBuffer> k2,
                    const kernels::SparseParams& params, float scale, const Tensor& selected,
                    const Tensor& scores) override {
    ScopedOp op(*timer_, "SelectBlocks");
    if (!Expect(q.dtype == DType::kBF16 && selected.dtype == DType::kI32 &&
                    selected.contiguous() && (!scores.data || scores.contiguous()),
                "SelectBlocks: layout")) {
      return;
    }
    if (!Views(k1, views_a_) || !Views(k2, views_b_)) return;
    kc::SelectBlocksArgs a;
    a.q = B16(q);
    a.num_tokens = q.rows;
    a.num_q_heads = q_heads;
    a.num_groups = static_cast<int64_t>(k1.size());
    a.head_dim = head_dim;
    a.q_stride = q.stride;
    a.first_position = first_position;
    a.k1 = views_a_.data();
    a.k2 = views_b_.data();
    a.params = params;
    a.scale = scale;
    a.selected = selected.i32();
    a.scores = scores.data ? scores.f32() : nullptr;
    const size_t bytes = kc::SelectBlocksScratchBytes(a);
    auto scratch = Scratch(bytes);
    if (!scratch.ok()) return Check(scratch.status());
    cublasStatus_t gemm = CUBLAS_STATUS_SUCCESS;
    Check(kc::SelectBlocks(a, cublas_, *scratch, bytes, stream_, &gemm), "SelectBlocks");
    Check(gemm, "SelectBlocks scores");
  }

  void BlockSparseAttention(const Tensor& q, int64_t q_heads, int64_t head_dim,
                            int64_t first_position, absl::Span<const PagedBuffer> keys,
                            absl::Span<const PagedBuffer> values, int64_t block_size,
                            const Tensor& selected, int64_t topk_total, float scale,
                            const Tensor& out) override {
    ScopedOp op(*timer_, "BlockSparseAttention");
    if (!Expect(q.dtype == DType::kBF16 && out.dtype == DType::kBF16 &&
                    (!selected.data || selected.contiguous()),
                "BlockSparseAttention: layout")) {
      return;
    }
    if (!Views(keys, views_a_) || !Views(values, views_b_)) return;
    kc::BlockSparseArgs a;
    a.q = B16(q);
    a.num_tokens = q.rows;
    a.num_q_heads = q_heads;
    a.num_groups = static_cast<int64_t>(keys.size());
    a.head_dim = head_dim;
    a.q_stride = q.stride;
    a.first_position = first_position;
    a.keys = views_a_.data();
    a.values = views_b_.data();
    a.block_size = block_size;
    a.selected = selected.data ? selected.i32() : nullptr;
    a.topk_total = topk_total;
    a.scale = scale;
    a.out = B16(out);
    a.out_stride = out.stride;
    a.scratch_bytes = kc::BlockSparseScratchBytes(a);
    auto scratch = Scratch(a.scratch_bytes);
    if (!scratch.ok()) return Check(scratch.status());
    a.scratch = *scratch;
    Check(kc::BlockSparseAttention(a, stream_), "BlockSparseAttention");
  }

  // --- collectives (NCCL; a group of one without a communicator) ----------------------------
  void AllReduceSum(const Tensor& x) override {
#ifdef TOME_HAVE_NCCL
    if (comm_ == nullptr || x.num_elements() == 0) return;
    ScopedOp op(*timer_, "AllReduceSum");
    if (!Expect(x.contiguous(), "AllReduceSum: tensor must be contiguous")) return;
    std::lock_guard<std::mutex> lock(comm_mu_);
    if (!CheckNotAborted()) return;
    Check(NcclStatus(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.num_elements()),
                                   NcclType(x.dtype), ncclSum, comm_, stream_),
                     "all-reduce"));
#else
    (void)x;
#endif
  }

  void AllGatherCols(const Tensor& local, const Tensor& full) override {
#ifdef TOME_HAVE_NCCL
    if (comm_ == nullptr) return Copy(full, local);
    ScopedOp op(*timer_, "AllGatherCols");
    const int64_t c = local.cols, rows = local.rows, es = DTypeSize(local.dtype);
    if (!Expect(local.contiguous() && local.dtype == full.dtype && full.rows == rows &&
                    full.cols == c * world_,
                "AllGatherCols: shapes")) {
      return;
    }
    const size_t count = static_cast<size_t>(rows * c);
    if (rows == 1 && full.contiguous()) {  // rank-major blocks are the row itself
      std::lock_guard<std::mutex> lock(comm_mu_);
      if (!CheckNotAborted()) return;
      Check(NcclStatus(ncclAllGather(local.data, full.data, count, NcclType(local.dtype), comm_,
                                     stream_),
                       "all-gather"));
      return;
    }
    // NCCL gathers rank-major blocks [rank][rows][c]; they become column blocks of `full`.
    auto scratch = Scratch(count * world_ * es);
    if (!scratch.ok()) return Check(scratch.status());
    std::unique_lock<std::mutex> lock(comm_mu_);
    if (!CheckNotAborted()) return;
    Check(NcclStatus(ncclAllGather(local.data, *scratch, count, NcclType(local.dtype), comm_,
                                   stream_),
                     "all-gather"));
    lock.unlock();
    for (int r = 0; r < world_; ++r) {
      Check(cudaMemcpy2DAsync(static_cast<char*>(full.data) + r * c * es, full.stride * es,
                              static_cast<char*>(*scratch) + r * count * es, c * es, c * es,
                              rows, cudaMemcpyDeviceToDevice, stream_),
            "AllGatherCols");
    }
#else
    Copy(full, local);
#endif
  }

  void AbortCollectives() override {
#ifdef TOME_HAVE_NCCL
    if (comm_ == nullptr || aborted_.exchange(true)) return;
    // Waits for an enqueue in progress on the rank's own thread (never for a collective to
    // complete: the lock covers enqueueing only), then ends the communicator's in-flight
    // kernels and frees it (ncclCommAbort). Collectives after this record an error instead
    // of running.
    std::lock_guard<std::mutex> lock(comm_mu_);
    int current = -1;
    cudaGetDevice(&current);  // the caller may be another rank's thread: keep its device
    cudaSetDevice(device_);
    ncclCommAbort(comm_);
    comm_aborted_and_freed_ = true;
    if (current >= 0) cudaSetDevice(current);
#endif
  }

 private:
  explicit CudaBackend(int device) : device_(device) {}

  // Makes this backend's device the calling thread's current one until the returned scope
  // ends (memory calls may come from threads other than the one driving the backend, e.g.
  // a tensor-parallel sequence freed on the caller's thread: its device is restored, so a
  // one-GPU engine driven from that thread keeps launching on its own device).
  class [[nodiscard]] DeviceScope {
   public:
    explicit DeviceScope(int device) {
      if (cudaGetDevice(&previous_) != cudaSuccess) {
        cudaGetLastError();
        previous_ = -1;
      }
      if (previous_ != device) cudaSetDevice(device);
      restore_ = previous_ >= 0 && previous_ != device;
    }
    ~DeviceScope() {
      if (restore_) cudaSetDevice(previous_);
    }
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;

   private:
    int previous_ = -1;
    bool restore_ = false;
  };
  DeviceScope Bind() const { return DeviceScope(device_); }

  absl::Status Init() {
    TOME_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
    TOME_RETURN_IF_ERROR(
        CudaStatus(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream"));
    TOME_RETURN_IF_ERROR(CublasStatus(cublasCreate(&cublas_), "cublasCreate"));
    TOME_RETURN_IF_ERROR(CublasStatus(cublasSetStream(cublas_, stream_), "cublasSetStream"));
    TOME_RETURN_IF_ERROR(CudaStatus(
        cudaEventCreateWithFlags(&staging_free_, cudaEventDisableTiming), "staging event"));
    // Keep freed pool memory reserved: pages and scratch are reused without new mappings.
    cudaMemPool_t pool;
    TOME_RETURN_IF_ERROR(CudaStatus(cudaDeviceGetDefaultMemPool(&pool, device_), "memory pool"));
    uint64_t threshold = std::numeric_limits<uint64_t>::max();
    TOME_RETURN_IF_ERROR(CudaStatus(
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
        "memory pool"));
    pool_ = pool;
    // Tensor parallelism: no peer access is granted to this pool. NCCL never reads or writes
    // another GPU's user buffers (NCCL_P2P_DIRECT_DISABLE=1, NewNcclGroup), and a pool that
    // peers may access maps every growth into their page tables too, from this rank's
    // thread, while their NCCL kernels run (see Drain).
    size_t free_bytes = 0, total_bytes = 0;
    TOME_RETURN_IF_ERROR(CudaStatus(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
    total_memory_ = total_bytes;
    if (world_ > 1) {
      // cuBLAS gets its workspace now: left to itself it may allocate (cudaMalloc, which can
      // wait for the device) at a first GEMM of some shape, between two collectives.
      TOME_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes),
                                      "cuBLAS workspace"));
      TOME_RETURN_IF_ERROR(CublasStatus(
          cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes),
          "cublasSetWorkspace"));
      ReserveBeforeAllocating(kPoolReserveBytes);
    }
    // A rank of a group drains its stream before uploading a page table (see Drain).
    tables_ = std::make_unique<PageTableCache>(stream_, /*drain_before_upload=*/world_ > 1);
    timer_ = std::make_unique<OpTimer>(stream_);
    return absl::OkStatus();
  }

  static size_t AlignTo16(size_t n) { return (n + 15) / 16 * 16; }

  // The pinned staging buffer of CopyManyFromHost, at least `bytes` large, once the device
  // has read its previous contents; null when pinned memory cannot be had (the caller copies
  // piece by piece instead) or the device failed (recorded).
  char* StagingFor(size_t bytes) {
    if (const cudaError_t e = cudaEventSynchronize(staging_free_); e != cudaSuccess) {
      Check(e, "CopyManyFromHost");
      return nullptr;
    }
    if (bytes > staging_bytes_) {
      Drain();  // pinned allocations map memory (see Drain)
      if (staging_host_ != nullptr) cudaFreeHost(staging_host_);
      staging_host_ = staging_device_ = nullptr;
      staging_bytes_ = 0;
      void* p = nullptr;
      if (cudaHostAlloc(&p, std::max(bytes, kStagingMinBytes),
                        cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess ||
          cudaHostGetDevicePointer(&staging_device_, p, 0) != cudaSuccess) {
        cudaGetLastError();  // not an error of the stream: the pageable path follows
        if (p != nullptr) cudaFreeHost(p);
        staging_device_ = nullptr;
        return nullptr;
      }
      staging_host_ = p;
      staging_bytes_ = std::max(bytes, kStagingMinBytes);
    }
    return static_cast<char*>(staging_host_);
  }

  // --- tensor parallelism: no driver call that can block on the device while a collective
  // is in flight ---------------------------------------------------------------------------
  // Single-process multi-GPU NCCL deadlocks when a rank's thread makes a CUDA call that
  // holds a driver lock while it waits for that rank's device (a copy from or to pageable
  // host memory waits for the stream; growing the memory pool or cudaMalloc maps memory
  // under the page-table lock) while that device runs an NCCL kernel, which waits for the
  // other rank, whose thread needs the same lock before it can launch its side of the
  // collective. A rank of a group therefore first waits for its stream to be idle
  // (cudaStreamSynchronize holds no such lock): the call then waits for nothing that
  // depends on another rank. A group of one never waits here.
  void Drain() {
    if (world_ > 1) Check(cudaStreamSynchronize(stream_), "tensor-parallel drain");
  }
  // Before an allocation of `bytes`: when the pool might have to grow for it, drains the
  // stream and grows the pool by kPoolReserveBytes at least (allocated and freed at once;
  // the pool keeps what it once held), so that the many small allocations that follow (KV
  // pages) come from reserved memory without new mappings.
  void ReserveBeforeAllocating(size_t bytes) {
    uint64_t reserved = 0, used = 0;
    if (cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &reserved) !=
            cudaSuccess ||
        cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrUsedMemCurrent, &used) != cudaSuccess) {
      cudaGetLastError();
      reserved = used = 0;
    }
    // Large requests may need a new contiguous range even when enough is free in pieces.
    if (bytes < kPoolLargeBytes && reserved >= used + bytes + kPoolHeadroomBytes) return;
    Drain();
    const size_t grow = std::max<size_t>(bytes, kPoolReserveBytes);
    if (total_memory_ != 0 && grow > total_memory_ / 4) return;  // no pre-growth that large
    void* p = nullptr;
    if (cudaMallocAsync(&p, grow, stream_) != cudaSuccess) {
      cudaGetLastError();  // the allocation itself reports running out of memory
      return;
    }
    cudaFreeAsync(p, stream_);
  }
  // False (with an error recorded) once AbortCollectives ran. Called with comm_mu_ held.
  bool CheckNotAborted() {
    if (!aborted_.load()) return true;
    Check(absl::AbortedError(
        "tensor-parallel collectives were aborted (another rank of the group failed)"));
    return false;
  }

  // Keeps the first error; Synchronize() returns it.
  void Check(const absl::Status& status) {
    if (!status.ok() && error_.ok()) error_ = status;
  }
  void Check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) Check(CudaStatus(e, what));
  }
  void Check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) Check(CublasStatus(s, what));
  }
  bool Expect(bool condition, const char* what) {
    if (!condition) Check(absl::InvalidArgumentError(absl::StrCat("CUDA backend: ", what)));
    return condition;
  }

  // Device views of the buffers (page tables uploaded as needed) into `views`.
  bool Views(absl::Span<const PagedBuffer> buffers, std::vector<kc::DevicePagedRows>& views) {
    views.clear();
    for (const PagedBuffer& b : buffers) {
      if (!Expect(b.dtype() == DType::kBF16, "paged buffer dtype")) return false;
      auto view = tables_->View(b);
      if (!view.ok()) {
        Check(view.status());
        return false;
      }
      views.push_back(*view);
    }
    return true;
  }

  // theta^(-2i/d) computed exactly as the CPU kernel does (glibc powf), kept on the device.
  absl::StatusOr<const float*> InvFreq(float theta, int64_t head_dim) {
    for (const InvFreqTable& t : inv_freq_) {
      if (t.theta == theta && t.head_dim == head_dim) return t.table;
    }
    std::vector<float> f(head_dim / 2);
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      f[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    }
    void* p = nullptr;
    Drain();  // a new allocation and a pageable copy: see Drain
    if (const cudaError_t e = cudaMallocAsync(&p, f.size() * sizeof(float) + 4, stream_);
        e != cudaSuccess) {
      cudaGetLastError();
      return CudaStatus(e, "RoPE table");
    }
    TOME_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(p, f.data(), f.size() * sizeof(float),
                                                    cudaMemcpyHostToDevice, stream_),
                                    "RoPE table"));
    inv_freq_.push_back({theta, head_dim, static_cast<float*>(p)});
    return static_cast<const float*>(p);
  }

  // Per-op device scratch (stream-ordered, so each op may reuse it from the start).
  absl::StatusOr<void*> Scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      const size_t size = std::max(bytes, scratch_bytes_ + scratch_bytes_ / 2);
      if (world_ > 1) ReserveBeforeAllocating(size);
      void* p = nullptr;
      if (const cudaError_t e = cudaMallocAsync(&p, size, stream_); e != cudaSuccess) {
        cudaGetLastError();
        return CudaStatus(e, absl::StrCat("scratch of ", size, " bytes"));
      }
      if (scratch_) cudaFreeAsync(scratch_, stream_);
      scratch_ = p;
      scratch_bytes_ = size;
    }
    return scratch_;
  }

  int device_;
#ifdef TOME_HAVE_NCCL
  ncclComm_t comm_ = nullptr;
  bool comm_aborted_and_freed_ = false;
#endif
  // Enqueueing a collective and AbortCollectives (from another thread) exclude each other.
  std::mutex comm_mu_;
  std::atomic<bool> aborted_{false};
  static constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
  static constexpr size_t kPoolReserveBytes = size_t{256} << 20;
  static constexpr size_t kPoolHeadroomBytes = size_t{64} << 20;
  static constexpr size_t kPoolLargeBytes = size_t{1} << 20;
  cudaMemPool_t pool_ = nullptr;
  void* cublas_workspace_ = nullptr;
  int world_ = 1;
  int first_device_ = 0;  // the group's devices: first_device_ .. first_device_ + world_ - 1
  uint64_t total_memory_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  static constexpr size_t kStagingMinBytes = size_t{4} << 20;
  cudaEvent_t staging_free_ = nullptr;  // recorded after each CopyManyFromHost kernel
  void* staging_host_ = nullptr;
  void* staging_device_ = nullptr;  // the same memory, as the device addresses it
  size_t staging_bytes_ = 0;
  absl::Status error_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  std::unique_ptr<PageTableCache> tables_;
  std::unique_ptr<OpTimer> timer_;
  std::vector<kc::DevicePagedRows> views_a_, views_b_;
  struct InvFreqTable {
    float theta;
    int64_t head_dim;
    float* table;
  };
  std::vector<InvFreqTable> inv_freq_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewCudaBackend(int device) {
  return CudaBackend::Create(device);
}

absl::StatusOr<std::shared_ptr<NcclGroup>> NewNcclGroup(int first_device, int world) {
#ifdef TOME_HAVE_NCCL
  // NVLink multicast (NVLS) stays off: it can take a shared host's GPUs out of service.
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  // With lazy module loading, a rank's first launch of a kernel (ours or cuBLAS's) can wait
  // for its GPU to go idle while an NCCL kernel there waits for the other rank, which waits
  // to load its own kernel: a hang seen on the first 9.48B TP=2 runs. Eager loading avoids
  // it; this only takes effect if CUDA is not initialised yet (programs set it first thing,
  // as tome_bench does; tools/device/tp_checks.sh exports it).
  setenv("CUDA_MODULE_LOADING", "EAGER", 0);
  // Our activations come from cudaMallocAsync's pool, which peer GPUs cannot access (Init
  // grants them no access: see there). NCCL's direct access to user buffers of another GPU
  // of the same process is therefore turned off (forced: it would fault), so that it only
  // ever moves data through its own buffers.
  setenv("NCCL_P2P_DIRECT_DISABLE", "1", 1);
  // Every connection at ncclCommInitAll rather than at the first collective that needs it
  // (NCCL >= 2.22 connects lazily: the first large all-reduce, whose algorithm and protocol
  // differ from the small ones', would allocate, map and exchange with the peer's thread in
  // the middle of a forward pass; see CudaBackend::Drain for why that is a hazard here).
  setenv("NCCL_RUNTIME_CONNECT", "0", 0);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) cudaGetLastError();
  if (world < 1 || first_device < 0 || first_device + world > count) {
    return absl::FailedPreconditionError(
        absl::StrCat("tensor_parallel=", world, " needs CUDA devices ", first_device, "..",
                     first_device + world - 1, " but ", count, " are visible"));
  }
  auto group = std::make_shared<NcclGroup>();
  group->world = world;
  group->first_device = first_device;
  group->comms.resize(world);
  std::vector<int> devices(world);
  std::iota(devices.begin(), devices.end(), first_device);
  int current = 0;
  cudaGetDevice(&current);
  const ncclResult_t r = ncclCommInitAll(group->comms.data(), world, devices.data());
  cudaSetDevice(current);
  TOME_RETURN_IF_ERROR(NcclStatus(r, "communicator setup"));
  return group;
#else
  (void)first_device;
  (void)world;
  return absl::UnimplementedError(
      "this build has no NCCL: tensor parallelism on CUDA needs it (nccl.h and libnccl at "
      "configure time)");
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> NewCudaBackend(int device,
                                                        std::shared_ptr<NcclGroup> group,
                                                        int rank) {
  if (!group || rank < 0 || rank >= group->world) {
    return absl::InvalidArgumentError(absl::StrCat("no NCCL rank ", rank, " in the group"));
  }
  return CudaBackend::Create(device, std::move(group), rank);
}

}  // namespace tome::engine
