// Every Backend op of the CUDA backend against the CPU backend (the reference), on fresh
// random inputs of several shapes: ragged lengths, partial Lightning chunks and KV blocks,
// tile edges, strided column slices. Both backends see the same values (inputs are rounded
// to bf16 first; the CPU holds them in fp32).
//
// Tolerances (norm-wise ‖cuda − cpu‖ / ‖cpu‖, plus no NaN/Inf):
//   * bf16 outputs: 2e-2 (one or two bf16 roundings of fp32 results, fp32 accumulation);
//   * fp32 outputs from identical inputs (fp32 GEMM outputs, Lightning states, random fills):
//     1e-4 (summation order only);
//   * memory ops, conversions: exact.
// Block selections are compared as sets per (query, group). The CUDA backend rounds the
// head-group scores to bf16 (the reference's rounding point) where the CPU keeps fp32, so
// blocks whose scores sit within bf16 rounding of the selection threshold may differ: a block
// only one side selected must score within 1/64 (relative) of the other side's lowest
// selected score, and at most 1% of all selected entries may differ.
//
// Outputs are poisoned before each run (NaN for floats, 0x7eadbeef for indices) and followed
// by guard elements; elements outside the output view (row gaps, guard) must stay poisoned.
// A coverage test fails if a virtual method of engine/src/backend.h has no case here.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "backend.h"
#include "cuda/cuda_backend.h"
#include "gpu_test_util.h"
#include "paged_buffer.h"
#include "tome/engine/config.h"
#include "tome/kernels/cuda/small_matmul.h"
#include "tome/kernels/cuda/sparse_attention.h"
#include "tome/kernels/sparse_params.h"

namespace tome::engine {
namespace {

using testing::ExpectClose;
using testing::RandomValues;
using testing::RoundBf16;

constexpr double kBf16Tol = 2e-2;
constexpr double kF32Tol = 1e-4;
constexpr int64_t kGuard = 64;  // poisoned elements after every tensor

uint32_t Poison(DType t) {
  switch (t) {
    case DType::kF32:
      return 0x7fc0deadu;  // NaN
    case DType::kBF16:
      return 0x7fc1u;  // NaN
    case DType::kI32:
      return 0x7eadbeefu;
  }
  return 0;
}

// A [rows, cols] tensor (row stride `stride`, starting `offset` elements into its buffer) on
// one backend, with every element outside the view poisoned.
class Mat {
 public:
  Mat(Backend& b, DType dtype, int64_t rows, int64_t cols, int64_t stride = 0, int64_t offset = 0)
      : b_(b), dtype_(dtype), rows_(rows), cols_(cols), stride_(stride ? stride : cols),
        offset_(offset), total_(offset + rows * (stride ? stride : cols) + kGuard) {
    buf_ = b.Allocate(total_ * DTypeSize(dtype)).value();
    t_ = Tensor{static_cast<char*>(buf_.data()) + offset_ * DTypeSize(dtype), dtype, rows, cols,
                stride_};
    std::vector<uint8_t> image(total_ * DTypeSize(dtype_));
    for (int64_t i = 0; i < total_; ++i) Write(image, i, Poison(dtype_));
    b_.CopyFromHost(Whole(), image.data());
  }

  const Tensor& t() const { return t_; }

  void Set(const std::vector<float>& values) {
    ASSERT_EQ(static_cast<int64_t>(values.size()), rows_ * cols_);
    std::vector<uint8_t> image = Image();
    for (int64_t r = 0; r < rows_; ++r) {
      for (int64_t c = 0; c < cols_; ++c) WriteFloat(image, Index(r, c), values[r * cols_ + c]);
    }
    b_.CopyFromHost(Whole(), image.data());
  }
  void SetInt(const std::vector<int32_t>& values) {
    std::vector<float> f(values.begin(), values.end());
    Set(f);
  }

  // The view's values (dense); checks that nothing outside the view was written.
  std::vector<float> Get() {
    const std::vector<uint8_t> image = Image();
    std::vector<float> out(rows_ * cols_);
    std::vector<bool> inside(total_, false);
    for (int64_t r = 0; r < rows_; ++r) {
      for (int64_t c = 0; c < cols_; ++c) {
        out[r * cols_ + c] = ReadFloat(image, Index(r, c));
        inside[Index(r, c)] = true;
      }
    }
    int64_t touched = 0;
    for (int64_t i = 0; i < total_; ++i) touched += !inside[i] && Read(image, i) != Poison(dtype_);
    EXPECT_EQ(touched, 0) << "elements written outside the output view";
    return out;
  }
  std::vector<int32_t> GetInt() {
    const std::vector<float> f = Get();
    return std::vector<int32_t>(f.begin(), f.end());
  }

 private:
  Tensor Whole() const { return Tensor{buf_.data(), dtype_, 1, total_, total_}; }
  int64_t Index(int64_t r, int64_t c) const { return offset_ + r * stride_ + c; }
  std::vector<uint8_t> Image() {
    std::vector<uint8_t> image(total_ * DTypeSize(dtype_));
    b_.CopyToHost(Whole(), image.data());
    return image;
  }
  uint32_t Read(const std::vector<uint8_t>& image, int64_t i) const {
    uint32_t bits = 0;
    std::memcpy(&bits, image.data() + i * DTypeSize(dtype_), DTypeSize(dtype_));
    return bits;
  }
  void Write(std::vector<uint8_t>& image, int64_t i, uint32_t bits) const {
    std::memcpy(image.data() + i * DTypeSize(dtype_), &bits, DTypeSize(dtype_));
  }
  float ReadFloat(const std::vector<uint8_t>& image, int64_t i) const {
    const uint32_t bits = Read(image, i);
    switch (dtype_) {
      case DType::kF32: {
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
      }
      case DType::kBF16:
        return BFloat16ToFloat(static_cast<uint16_t>(bits));
      case DType::kI32:
        return static_cast<float>(static_cast<int32_t>(bits));
    }
    return 0;
  }
  void WriteFloat(std::vector<uint8_t>& image, int64_t i, float v) const {
    switch (dtype_) {
      case DType::kF32: {
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        Write(image, i, bits);
        break;
      }
      case DType::kBF16:
        Write(image, i, FloatToBFloat16(v));
        break;
      case DType::kI32:
        Write(image, i, static_cast<uint32_t>(static_cast<int32_t>(v)));
        break;
    }
  }

  Backend& b_;
  DType dtype_;
  int64_t rows_, cols_, stride_, offset_, total_;
  Buffer buf_;
  Tensor t_;
};

struct Harness {
  Backend& cpu;
  Backend& gpu;
  void Sync() {
    const absl::Status s = gpu.Synchronize();
    ASSERT_TRUE(s.ok()) << s;
  }
};

// The same [rows, width] matrix as paged buffers of both backends (bf16 on the GPU), appended
// in uneven pieces.
struct PagedPair {
  PagedBuffer cpu, gpu;
};
PagedPair MakePaged(Harness& h, const std::vector<float>& values, int64_t rows, int64_t width,
                    int64_t rows_per_page) {
  PagedPair p{PagedBuffer(&h.cpu, DType::kF32, rows_per_page, width),
              PagedBuffer(&h.gpu, DType::kBF16, rows_per_page, width)};
  for (auto [b, pb, dt] : {std::tuple{&h.cpu, &p.cpu, DType::kF32},
                           std::tuple{&h.gpu, &p.gpu, DType::kBF16}}) {
    Mat m(*b, dt, rows, width);
    m.Set(values);
    for (int64_t r0 = 0, piece = 37; r0 < rows; r0 += piece, piece = piece * 3 % 101 + 1) {
      const absl::Status s = pb->Append(m.t().Rows(r0, std::min(piece, rows - r0)));
      EXPECT_TRUE(s.ok()) << s;
    }
    EXPECT_TRUE(b->Synchronize().ok());
  }
  return p;
}

struct OpCase {
  std::vector<std::string> ops;  // Backend methods the case covers
  std::string name;
  std::function<void(Harness&)> run;
};

// --- memory ---------------------------------------------------------------------------------

void PropertiesCase(Harness& h) {
  EXPECT_EQ(h.gpu.kind(), DeviceKind::kCuda);
  EXPECT_EQ(h.gpu.activation_dtype(), DType::kBF16);
  EXPECT_EQ(h.gpu.weight_dtype(), DType::kBF16);
}

void MemoryCase(Harness& h) {
  // Out of memory is a status, never a crash, and the backend keeps working.
  auto huge = h.gpu.Allocate(int64_t{1} << 50);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted) << huge.status();
  h.Sync();
  for (DType dt : {DType::kF32, DType::kBF16, DType::kI32}) {
    Mat m(h.gpu, dt, 7, 5, 9, 3);
    std::vector<float> v = RandomValues(35, 11);
    if (dt == DType::kI32) {
      for (float& x : v) x = std::round(x * 1000);
    }
    m.Set(v);
    EXPECT_EQ(m.Get(), v);
  }
  {
    Buffer freed = h.gpu.Allocate(1 << 20).value();
    freed = Buffer();  // Free
    Buffer again = h.gpu.Allocate(1 << 20).value();
    EXPECT_NE(again.data(), nullptr);
  }
  h.Sync();
}

void CopyCase(Harness& h) {
  const std::vector<float> v = RandomValues(7 * 5, 12);
  for (auto [from, to] : {std::pair{DType::kBF16, DType::kBF16}, {DType::kF32, DType::kF32},
                          {DType::kF32, DType::kBF16}, {DType::kBF16, DType::kF32}}) {
    Mat src(h.gpu, from, 7, 5, 9, 1), dst(h.gpu, to, 7, 5, 6, 2);
    src.Set(v);
    h.gpu.Copy(dst.t(), src.t());
    h.Sync();
    EXPECT_EQ(dst.Get(), v);
  }
}

// CopyManyFromHost: pieces of KV-page, odd (byte-copied) and fp32 shapes, bytes read back
// exactly; the second, larger call grows the staging memory and the third reuses it while
// the host buffers are already rewritten (the call copies before it returns). The last call
// mixes pieces in AllocateHost memory (read in place by the device) with staged ones, and
// rewrites both right after the call: it must have waited for the in-place reads. The last
// marks its in-place pieces kept_until_synchronized: they are rewritten only after a
// Synchronize (the call need not wait for them).
void CopyManyFromHostCase(Harness& h) {
  struct Shape {
    DType dtype;
    int64_t rows, cols;
  };
  std::mt19937 rng(14);
  for (int pieces : {5, 300, 40, 64, 65}) {
    const bool mixed = pieces >= 64, kept = pieces == 65;
    std::vector<Buffer> buffers;
    std::vector<uint8_t*> host;
    std::vector<std::vector<uint8_t>> heap;
    std::vector<std::shared_ptr<void>> pinned;
    std::vector<HostPiece> list;
    for (int i = 0; i < pieces; ++i) {
      const Shape shape = i % 5 == 1   ? Shape{DType::kBF16, 7, 21}
                          : i % 5 == 3 ? Shape{DType::kF32, 3, 5}
                                       : Shape{DType::kBF16, 64, 128};
      const int64_t bytes = shape.rows * shape.cols * DTypeSize(shape.dtype);
      buffers.push_back(h.gpu.Allocate(bytes).value());
      bool readable = false;
      if (mixed && i % 2 == 0) {
        Backend::HostMemory memory = h.gpu.AllocateHost(bytes).value();
        ASSERT_TRUE(memory.device_readable) << "pinned, mapped host memory on the GPU";
        readable = true;
        pinned.push_back(memory.data);
        host.push_back(static_cast<uint8_t*>(memory.data.get()));
      } else {
        heap.emplace_back(bytes);
        host.push_back(heap.back().data());
      }
      for (int64_t b = 0; b < bytes; ++b) host.back()[b] = static_cast<uint8_t>(rng());
      list.push_back(
          {Tensor{buffers.back().data(), shape.dtype, shape.rows, shape.cols, shape.cols},
           host.back(), readable, readable && kept});
    }
    h.gpu.CopyManyFromHost(list);
    if (kept) h.Sync();
    std::vector<std::vector<uint8_t>> want;
    for (int i = 0; i < pieces; ++i) {
      const int64_t bytes = list[i].dst.num_elements() * DTypeSize(list[i].dst.dtype);
      want.emplace_back(host[i], host[i] + bytes);
      std::fill(host[i], host[i] + bytes, 0);  // the call copied (or read) already
    }
    for (int i = 0; i < pieces; ++i) {
      std::vector<uint8_t> got(want[i].size());
      h.gpu.CopyToHost(list[i].dst, got.data());
      ASSERT_EQ(got, want[i]) << "piece " << i << " of " << pieces;
    }
  }
  h.Sync();
}

// Collectives of a backend that is a group of one: the all-reduce leaves the data as it is,
// the column gather is a copy (several ranks: tp_cuda_test.cc).
void CollectivesAloneCase(Harness& h) {
  const std::vector<float> v = RandomValues(7 * 5, 13);
  for (DType dt : {DType::kBF16, DType::kF32}) {
    Mat x(h.gpu, dt, 7, 5), full(h.gpu, dt, 7, 5, 8, 3);
    x.Set(v);
    h.gpu.AllReduceSum(x.t());
    h.gpu.AllGatherCols(x.t(), full.t());
    h.Sync();
    EXPECT_EQ(x.Get(), v);
    EXPECT_EQ(full.Get(), v);
  }
}

// Aborting the collectives of a group of one ends nothing: there is no communicator, and
// ordinary ops and the (trivial) collectives keep working (several ranks:
// TensorParallelAbortTest on the CPU).
void AbortAloneCase(Harness& h) {
  h.gpu.AbortCollectives();
  const std::vector<float> v = RandomValues(3 * 4, 17);
  Mat x(h.gpu, DType::kF32, 3, 4);
  x.Set(v);
  h.gpu.AllReduceSum(x.t());
  h.Sync();
  EXPECT_EQ(x.Get(), v);
}

void FillCase(Harness& h) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kI32}) {
    Mat m(h.gpu, dt, 5, 7, 11, 4);
    h.gpu.Fill(m.t(), -3.0f);
    h.Sync();
    EXPECT_EQ(m.Get(), std::vector<float>(35, -3.0f));
  }
}

void FillRandomCase(Harness& h) {
  const int64_t rows = 300, cols = 70;
  Mat cpu(h.cpu, DType::kF32, rows, cols), g32(h.gpu, DType::kF32, rows, cols, 80, 5),
      g16(h.gpu, DType::kBF16, rows, cols, 71);
  h.cpu.FillRandom(cpu.t(), 99, 0.5f, 2.0f);
  h.gpu.FillRandom(g32.t(), 99, 0.5f, 2.0f);
  h.gpu.FillRandom(g16.t(), 99, 0.5f, 2.0f);
  h.Sync();
  const std::vector<float> want = cpu.Get();
  ExpectClose(g32.Get(), want, kF32Tol, "FillRandom fp32");
  ExpectClose(g16.Get(), want, kBf16Tol, "FillRandom bf16");
  double mean = 0, sq = 0;
  for (float x : want) mean += x / want.size();
  for (float x : want) sq += (x - mean) * (x - mean) / want.size();
  EXPECT_NEAR(mean, 0.5, 0.05);
  EXPECT_NEAR(std::sqrt(sq), 2.0, 0.1);
}

void UploadCase(Harness& h) {
  const int64_t rows = 6, cols = 10, n = rows * cols;
  std::vector<float> f = RandomValues(n, 13, 3.0f);
  for (float& x : f) x += 0.001f;  // not bf16-exact: the conversion must round
  std::vector<uint16_t> b16(n), f16(n);
  for (int64_t i = 0; i < n; ++i) {
    b16[i] = FloatToBFloat16(f[i]);
    f16[i] = FloatToHalf(f[i]);
  }
  struct Source {
    TensorDType dtype;
    const void* data;
    int64_t bytes;
  };
  for (const Source& s : {Source{TensorDType::kF32, f.data(), n * 4},
                          Source{TensorDType::kBF16, b16.data(), n * 2},
                          Source{TensorDType::kF16, f16.data(), n * 2}}) {
    TensorInfo info{"w", s.dtype, {rows, cols}, static_cast<const uint8_t*>(s.data), s.bytes, 0};
    std::vector<float> exact(n);
    SafetensorsCheckpoint::ToFloat32(info, exact.data());
    std::vector<float> rounded(exact);
    for (float& x : rounded) x = RoundBf16(x);
    // Weight matrices (bf16) and norm vectors (fp32); a row slice of a larger matrix too.
    Mat w16(h.gpu, DType::kBF16, rows, cols), w32(h.gpu, DType::kF32, rows, cols);
    Mat big(h.gpu, DType::kBF16, 3 * rows, cols);
    h.gpu.UploadTensor(info, w16.t());
    h.gpu.UploadTensor(info, w32.t());
    h.gpu.UploadTensor(info, big.t().Rows(rows, rows));
    h.Sync();
    EXPECT_EQ(w16.Get(), rounded) << TensorDTypeName(s.dtype);
    EXPECT_EQ(w32.Get(), exact) << TensorDTypeName(s.dtype);
    const std::vector<float> all = big.Get();
    EXPECT_EQ(std::vector<float>(all.begin() + n, all.begin() + 2 * n), rounded);
    EXPECT_TRUE(std::isnan(all[0]) && std::isnan(all[2 * n]));  // neighbours untouched
  }
}

// --- dense ops ------------------------------------------------------------------------------

void EmbeddingCase(Harness& h, int64_t vocab, int64_t dim, int64_t tokens) {
  const std::vector<float> table = RandomValues(vocab * dim, 20 + tokens, 0.05f);
  std::vector<int32_t> ids(tokens);
  std::mt19937 rng(tokens);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
  if (tokens > 2) ids[1] = ids[0];  // repeats
  Mat tc(h.cpu, DType::kF32, vocab, dim), tg(h.gpu, DType::kBF16, vocab, dim);
  tc.Set(table);
  tg.Set(table);
  Mat oc(h.cpu, DType::kF32, tokens, dim), og(h.gpu, DType::kBF16, tokens, dim, dim + 8, 3);
  h.cpu.Embedding(tc.t(), ids, 12.0f, oc.t());
  h.gpu.Embedding(tg.t(), ids, 12.0f, og.t());
  h.Sync();
  ExpectClose(og.Get(), oc.Get(), kBf16Tol, "Embedding");
}

void MatMulCase(Harness& h, int64_t m, int64_t n, int64_t k, DType out) {
  const std::vector<float> x = RandomValues(m * k, m + n + k), w = RandomValues(n * k, k, 0.05f);
  Mat xc(h.cpu, DType::kF32, m, k), wc(h.cpu, DType::kF32, n, k), yc(h.cpu, DType::kF32, m, n);
  // x as a column slice of a wider matrix, y strided as well.
  Mat xg(h.gpu, DType::kBF16, m, k, k + 32, 16), wg(h.gpu, DType::kBF16, n, k),
      yg(h.gpu, out, m, n, n + 8, 8);
  xc.Set(x);
  wc.Set(w);
  xg.Set(x);
  wg.Set(w);
  h.cpu.MatMul(xc.t(), wc.t(), yc.t());
  h.gpu.MatMul(xg.t(), wg.t(), yg.t());
  h.Sync();
  ExpectClose(yg.Get(), yc.Get(), out == DType::kF32 ? kF32Tol : kBf16Tol,
              out == DType::kF32 ? "MatMul bf16 x bf16 -> fp32" : "MatMul bf16");
}

void RmsNormCase(Harness& h, int64_t rows, int64_t groups, int64_t n, int64_t stride,
                 int64_t offset) {
  const std::vector<float> x = RandomValues(rows * groups * n, rows + n, 3.0f);
  const std::vector<float> w = RandomValues(n, n, 0.1f, 1.0f);
  Mat xc(h.cpu, DType::kF32, rows, groups * n), xg(h.gpu, DType::kBF16, rows, groups * n, stride,
                                                   offset);
  Mat wc(h.cpu, DType::kF32, 1, n), wg(h.gpu, DType::kF32, 1, n);
  xc.Set(x);
  xg.Set(x);
  wc.Set(w);
  wg.Set(w);
  h.cpu.RmsNorm(xc.t(), wc.t(), groups, 1e-6f);
  h.gpu.RmsNorm(xg.t(), wg.t(), groups, 1e-6f);
  h.Sync();
  ExpectClose(xg.Get(), xc.Get(), kBf16Tol, "RmsNorm");
}

void RopeCase(Harness& h, int64_t tokens, int64_t heads, int64_t d, int64_t first,
              int64_t stride, int64_t offset) {
  const std::vector<float> x = RandomValues(tokens * heads * d, tokens + first);
  Mat xc(h.cpu, DType::kF32, tokens, heads * d),
      xg(h.gpu, DType::kBF16, tokens, heads * d, stride, offset);
  xc.Set(x);
  xg.Set(x);
  h.cpu.Rope(xc.t(), heads, d, first, 10000.0f);
  h.gpu.Rope(xg.t(), heads, d, first, 10000.0f);
  h.Sync();
  ExpectClose(xg.Get(), xc.Get(), kBf16Tol, "Rope");
}

void SiluMulCase(Harness& h, int64_t rows, int64_t cols, int64_t out_pad) {
  const std::vector<float> gu = RandomValues(rows * 2 * cols, cols, 2.0f);
  Mat gc(h.cpu, DType::kF32, rows, 2 * cols), gg(h.gpu, DType::kBF16, rows, 2 * cols);
  Mat oc(h.cpu, DType::kF32, rows, cols, cols + out_pad),
      og(h.gpu, DType::kBF16, rows, cols, cols + out_pad);
  gc.Set(gu);
  gg.Set(gu);
  h.cpu.SiluMul(gc.t().Cols(0, cols), gc.t().Cols(cols, cols), oc.t());
  h.gpu.SiluMul(gg.t().Cols(0, cols), gg.t().Cols(cols, cols), og.t());
  h.Sync();
  ExpectClose(og.Get(), oc.Get(), kBf16Tol, "SiluMul");
}

void SigmoidMulCase(Harness& h, int64_t rows, int64_t cols) {
  const std::vector<float> x = RandomValues(rows * cols, cols), z = RandomValues(rows * 2 * cols, 7);
  Mat xc(h.cpu, DType::kF32, rows, cols), xg(h.gpu, DType::kBF16, rows, cols);
  Mat zc(h.cpu, DType::kF32, rows, 2 * cols), zg(h.gpu, DType::kBF16, rows, 2 * cols);
  xc.Set(x);
  xg.Set(x);
  zc.Set(z);
  zg.Set(z);
  h.cpu.SigmoidMul(xc.t(), zc.t().Cols(cols, cols));
  h.gpu.SigmoidMul(xg.t(), zg.t().Cols(cols, cols));
  h.Sync();
  ExpectClose(xg.Get(), xc.Get(), kBf16Tol, "SigmoidMul");
}

void AddScaledCase(Harness& h, int64_t rows, int64_t cols) {
  const std::vector<float> hv = RandomValues(rows * cols, 3, 4.0f), x = RandomValues(rows * cols, 4);
  Mat hc(h.cpu, DType::kF32, rows, cols), hg(h.gpu, DType::kBF16, rows, cols);
  Mat xc(h.cpu, DType::kF32, rows, cols), xg(h.gpu, DType::kBF16, rows, cols);
  hc.Set(hv);
  hg.Set(hv);
  xc.Set(x);
  xg.Set(x);
  h.cpu.AddScaled(hc.t(), xc.t(), 0.2475f);
  h.gpu.AddScaled(hg.t(), xg.t(), 0.2475f);
  h.Sync();
  ExpectClose(hg.Get(), hc.Get(), kBf16Tol, "AddScaled");
}

// The fused residual step (h += alpha·x, out = RmsNorm(h)): against the CPU's default, and
// bit for bit against the CUDA backend's own AddScaled, Copy and RmsNorm. Rows `stride` apart
// (the engine's are dense; the fused kernel takes any 16-byte-aligned stride).
void ResidualRmsNormCase(Harness& h, int64_t rows, int64_t n, int64_t stride, bool with_x) {
  const std::vector<float> hv = RandomValues(rows * n, 11 + n, 4.0f);
  const std::vector<float> x = RandomValues(rows * n, 12 + n);
  const std::vector<float> w = RandomValues(n, 13, 0.1f, 1.0f);
  Mat hc(h.cpu, DType::kF32, rows, n), xc(h.cpu, DType::kF32, rows, n);
  Mat oc(h.cpu, DType::kF32, rows, n), wc(h.cpu, DType::kF32, 1, n);
  Mat hg(h.gpu, DType::kBF16, rows, n, stride), xg(h.gpu, DType::kBF16, rows, n, stride);
  Mat og(h.gpu, DType::kBF16, rows, n, stride), wg(h.gpu, DType::kF32, 1, n);
  Mat hg2(h.gpu, DType::kBF16, rows, n), og2(h.gpu, DType::kBF16, rows, n);
  hc.Set(hv), hg.Set(hv), hg2.Set(hv), xc.Set(x), xg.Set(x), wc.Set(w), wg.Set(w);
  const float alpha = 0.2475f;
  h.cpu.ResidualRmsNorm(hc.t(), with_x ? xc.t() : Tensor{}, alpha, wc.t(), 1e-6f, oc.t());
  h.gpu.ResidualRmsNorm(hg.t(), with_x ? xg.t() : Tensor{}, alpha, wg.t(), 1e-6f, og.t());
  if (with_x) h.gpu.AddScaled(hg2.t(), xg.t(), alpha);  // the unfused sequence
  h.gpu.Copy(og2.t(), hg2.t());
  h.gpu.RmsNorm(og2.t(), wg.t(), 1, 1e-6f);
  h.Sync();
  ExpectClose(hg.Get(), hc.Get(), kBf16Tol, "ResidualRmsNorm residual");
  ExpectClose(og.Get(), oc.Get(), kBf16Tol, "ResidualRmsNorm normalised");
  EXPECT_EQ(hg.Get(), hg2.Get()) << "fused residual differs from AddScaled";
  EXPECT_EQ(og.Get(), og2.Get()) << "fused norm differs from Copy + RmsNorm";
}

// Per-head RMSNorm then RoPE: against the CPU's default, and bit for bit against the CUDA
// backend's own RmsNorm and Rope.
void HeadRmsNormRopeCase(Harness& h, int64_t tokens, int64_t heads, int64_t d, int64_t first,
                         int64_t stride) {
  const std::vector<float> x = RandomValues(tokens * heads * d, tokens + d, 3.0f);
  const std::vector<float> w = RandomValues(d, d + 1, 0.1f, 1.0f);
  Mat xc(h.cpu, DType::kF32, tokens, heads * d), wc(h.cpu, DType::kF32, 1, d);
  Mat xg(h.gpu, DType::kBF16, tokens, heads * d, stride), wg(h.gpu, DType::kF32, 1, d);
  Mat xg2(h.gpu, DType::kBF16, tokens, heads * d, stride);
  xc.Set(x), xg.Set(x), xg2.Set(x), wc.Set(w), wg.Set(w);
  h.cpu.HeadRmsNormRope(xc.t(), wc.t(), heads, d, 1e-6f, first, 10000.0f);
  h.gpu.HeadRmsNormRope(xg.t(), wg.t(), heads, d, 1e-6f, first, 10000.0f);
  h.gpu.RmsNorm(xg2.t(), wg.t(), heads, 1e-6f);
  h.gpu.Rope(xg2.t(), heads, d, first, 10000.0f);
  h.Sync();
  ExpectClose(xg.Get(), xc.Get(), kBf16Tol, "HeadRmsNormRope");
  EXPECT_EQ(xg.Get(), xg2.Get()) << "fused differs from RmsNorm + Rope";
}

// Queries and keys of Lightning (adjacent column blocks of the projection, or apart): against
// the CPU's default, and bit for bit against the CUDA backend's own HeadRmsNormRope per half.
void QkHeadRmsNormRopeCase(Harness& h, int64_t tokens, int64_t heads, int64_t d, int64_t first,
                           int64_t gap) {
  const int64_t q = heads * d, width = 2 * q + gap;
  const std::vector<float> x = RandomValues(tokens * width, tokens + d + gap, 3.0f);
  const std::vector<float> wq = RandomValues(d, d + 2, 0.1f, 1.0f);
  const std::vector<float> wk = RandomValues(d, d + 3, 0.1f, 1.0f);
  Mat xc(h.cpu, DType::kF32, tokens, width), xg(h.gpu, DType::kBF16, tokens, width);
  Mat xg2(h.gpu, DType::kBF16, tokens, width);
  Mat wqc(h.cpu, DType::kF32, 1, d), wkc(h.cpu, DType::kF32, 1, d);
  Mat wqg(h.gpu, DType::kF32, 1, d), wkg(h.gpu, DType::kF32, 1, d);
  xc.Set(x), xg.Set(x), xg2.Set(x), wqc.Set(wq), wkc.Set(wk), wqg.Set(wq), wkg.Set(wk);
  const auto run = [&](Backend& b, const Tensor& t, const Tensor& w1, const Tensor& w2) {
    b.QkHeadRmsNormRope(t.Cols(0, q), t.Cols(q + gap, q), w1, w2, heads, d, 1e-6f, first, 10000.0f);
  };
  run(h.cpu, xc.t(), wqc.t(), wkc.t());
  run(h.gpu, xg.t(), wqg.t(), wkg.t());
  h.gpu.HeadRmsNormRope(xg2.t().Cols(0, q), wqg.t(), heads, d, 1e-6f, first, 10000.0f);
  h.gpu.HeadRmsNormRope(xg2.t().Cols(q + gap, q), wkg.t(), heads, d, 1e-6f, first, 10000.0f);
  h.Sync();
  const std::vector<float> got = xg.Get();
  ExpectClose(got, xc.Get(), kBf16Tol, "QkHeadRmsNormRope");
  EXPECT_EQ(got, xg2.Get()) << "QkHeadRmsNormRope differs from HeadRmsNormRope per half";
}

// RmsNorm of whole rows then the sigmoid gate (Lightning's o_norm and z): against the CPU's
// default, and bit for bit against the CUDA backend's own RmsNorm and SigmoidMul.
void RmsNormSigmoidMulCase(Harness& h, int64_t rows, int64_t n, int64_t z_stride) {
  const std::vector<float> x = RandomValues(rows * n, rows + n, 3.0f);
  const std::vector<float> z = RandomValues(rows * n, n + 5, 2.0f);
  const std::vector<float> w = RandomValues(n, n + 6, 0.1f, 1.0f);
  Mat xc(h.cpu, DType::kF32, rows, n), zc(h.cpu, DType::kF32, rows, n);
  Mat wc(h.cpu, DType::kF32, 1, n), wg(h.gpu, DType::kF32, 1, n);
  Mat xg(h.gpu, DType::kBF16, rows, n), xg2(h.gpu, DType::kBF16, rows, n);
  Mat zg(h.gpu, DType::kBF16, rows, n, z_stride, 8);
  xc.Set(x), xg.Set(x), xg2.Set(x), zc.Set(z), zg.Set(z), wc.Set(w), wg.Set(w);
  h.cpu.RmsNormSigmoidMul(xc.t(), wc.t(), 1e-6f, zc.t());
  h.gpu.RmsNormSigmoidMul(xg.t(), wg.t(), 1e-6f, zg.t());
  h.gpu.RmsNorm(xg2.t(), wg.t(), 1, 1e-6f);
  h.gpu.SigmoidMul(xg2.t(), zg.t());
  h.Sync();
  const std::vector<float> got = xg.Get();
  ExpectClose(got, xc.Get(), kBf16Tol, "RmsNormSigmoidMul");
  EXPECT_EQ(got, xg2.Get()) << "RmsNormSigmoidMul differs from RmsNorm + SigmoidMul";
}

// The MLP's gate/up product and SwiGLU: against the CPU's default, and bit for bit against the
// CUDA backend's own MatMul and SiluMul (decode rows take the fused GEMV).
void MatMulSiluMulCase(Harness& h, int64_t m, int64_t f, int64_t k) {
  const std::vector<float> x = RandomValues(m * k, m + f + k, 2.0f);
  const std::vector<float> w = RandomValues(2 * f * k, f + k, 0.05f);
  Mat xc(h.cpu, DType::kF32, m, k), wc(h.cpu, DType::kF32, 2 * f, k);
  Mat gc(h.cpu, DType::kF32, m, 2 * f), oc(h.cpu, DType::kF32, m, f);
  Mat xg(h.gpu, DType::kBF16, m, k, k + 16, 8), wg(h.gpu, DType::kBF16, 2 * f, k);
  Mat gg(h.gpu, DType::kBF16, m, 2 * f), og(h.gpu, DType::kBF16, m, f, f + 8, 8);
  Mat gg2(h.gpu, DType::kBF16, m, 2 * f), og2(h.gpu, DType::kBF16, m, f);
  xc.Set(x), wc.Set(w), xg.Set(x), wg.Set(w);
  h.cpu.MatMulSiluMul(xc.t(), wc.t(), gc.t(), oc.t());
  h.gpu.MatMulSiluMul(xg.t(), wg.t(), gg.t(), og.t());
  h.gpu.MatMul(xg.t(), wg.t(), gg2.t());
  h.gpu.SiluMul(gg2.t().Cols(0, f), gg2.t().Cols(f, f), og2.t());
  h.Sync();
  const std::vector<float> got = og.Get();
  ExpectClose(got, oc.Get(), kBf16Tol, "MatMulSiluMul");
  EXPECT_EQ(got, og2.Get()) << "MatMulSiluMul differs from MatMul + SiluMul";
}

// --- Lightning ------------------------------------------------------------------------------

// q, k, v as column slices of one projection output (as the model lays them out). The CUDA
// side runs the tokens in the calls `splits` (e.g. {100, 37}); the CPU in one call.
void LightningCase(Harness& h, int64_t heads, int64_t d, std::vector<int64_t> splits) {
  int64_t tokens = 0;
  for (int64_t s : splits) tokens += s;
  const int64_t q = heads * d;
  const std::vector<float> proj = RandomValues(tokens * 4 * q, tokens + d);
  const std::vector<float> state0 = RandomValues(heads * d * d, heads, 0.1f);
  const std::vector<double> slopes64 = LightningSlopes(heads);
  const std::vector<float> slopes(slopes64.begin(), slopes64.end());
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  Mat pc(h.cpu, DType::kF32, tokens, 4 * q), pg(h.gpu, DType::kBF16, tokens, 4 * q);
  Mat sc(h.cpu, DType::kF32, heads * d, d), sg(h.gpu, DType::kF32, heads * d, d);
  Mat lc(h.cpu, DType::kF32, 1, heads), lg(h.gpu, DType::kF32, 1, heads);
  Mat oc(h.cpu, DType::kF32, tokens, q), og(h.gpu, DType::kBF16, tokens, q);
  pc.Set(proj);
  pg.Set(proj);
  sc.Set(state0);
  sg.Set(state0);
  lc.Set(slopes);
  lg.Set(slopes);
  const Tensor P = pc.t();
  h.cpu.Lightning(P.Cols(0, q), P.Cols(q, q), P.Cols(2 * q, q), heads, d, lc.t(), scale, sc.t(),
                  oc.t());
  int64_t t0 = 0;
  for (int64_t n : splits) {
    const Tensor G = pg.t().Rows(t0, n);
    h.gpu.Lightning(G.Cols(0, q), G.Cols(q, q), G.Cols(2 * q, q), heads, d, lg.t(), scale, sg.t(),
                    og.t().Rows(t0, n));
    t0 += n;
  }
  h.Sync();
  ExpectClose(og.Get(), oc.Get(), kBf16Tol, "Lightning output");
  ExpectClose(sg.Get(), sc.Get(), kF32Tol, "Lightning state (fp32)");
}

// --- sparse layers --------------------------------------------------------------------------

// The rows of a paged buffer, dense, read page by page (Copy: bit-exact for equal dtypes).
std::vector<float> PagedRowsOf(Harness& h, const PagedBuffer& p) {
  Mat out(h.gpu, p.dtype(), p.num_rows(), p.width());
  for (int64_t page = 0; page < p.num_pages(); ++page) {
    const int64_t rows = p.rows_in_page(page);
    h.gpu.Copy(out.t().Rows(page * p.rows_per_page(), rows),
               Tensor{const_cast<void*>(p.page(page)), p.dtype(), rows, p.width(), p.width()});
  }
  h.Sync();
  return out.Get();
}

// PagedBuffer::Append → WriteRows: pieces starting mid-page and spanning several pages, from
// a strided (and, at offset 1, unaligned) source; a fork appending to a shared partial page
// copies it first, so neither buffer sees the other's rows. The copy is exact.
void WriteRowsCase(Harness& h, int64_t width, int64_t stride, int64_t offset) {
  const int64_t n = 172;
  Mat src(h.gpu, DType::kBF16, n, width, stride, offset);
  src.Set(RandomValues(n * width, width + stride));
  const std::vector<float> v = src.Get();  // bf16-rounded
  auto rows_of = [&](int64_t first, int64_t count) {
    return std::vector<float>(v.begin() + first * width, v.begin() + (first + count) * width);
  };
  PagedBuffer a(&h.gpu, DType::kBF16, 64, width);
  for (auto [first, count] : {std::pair<int64_t, int64_t>{0, 10}, {10, 150}}) {
    const absl::Status s = a.Append(src.t().Rows(first, count));
    ASSERT_TRUE(s.ok()) << s;
  }
  PagedBuffer b = a.Fork();
  ASSERT_TRUE(b.Append(src.t().Rows(160, 7)).ok());
  ASSERT_TRUE(a.Append(src.t().Rows(167, 5)).ok());
  std::vector<float> want_a = rows_of(0, 160), want_b = rows_of(0, 160);
  const std::vector<float> tail_a = rows_of(167, 5), tail_b = rows_of(160, 7);
  want_a.insert(want_a.end(), tail_a.begin(), tail_a.end());
  want_b.insert(want_b.end(), tail_b.begin(), tail_b.end());
  EXPECT_EQ(a.num_pages(), 3);
  EXPECT_NE(a.page(2), b.page(2));  // copied on write
  EXPECT_EQ(a.page(1), b.page(1));  // full pages stay shared
  EXPECT_EQ(PagedRowsOf(h, a), want_a);
  EXPECT_EQ(PagedRowsOf(h, b), want_b);
}


void WindowMeansCase(Harness& h, int64_t rows, int64_t d, int64_t window, int64_t stride,
                     int64_t first) {
  const std::vector<float> keys = RandomValues(rows * d, rows + window);
  PagedPair p = MakePaged(h, keys, rows, d, 64);
  const int64_t n = kernels::SparseParams::NumWindows(rows, window, stride) - first;
  ASSERT_GT(n, 0);
  Mat oc(h.cpu, DType::kF32, n, d), og(h.gpu, DType::kBF16, n, d);
  h.cpu.WindowMeans(p.cpu, first, window, stride, oc.t());
  h.gpu.WindowMeans(p.gpu, first, window, stride, og.t());
  h.Sync();
  ExpectClose(og.Get(), oc.Get(), kBf16Tol, "WindowMeans");
}

kernels::SparseParams Params(int64_t local, int64_t topk) {
  kernels::SparseParams sp;
  sp.block_size = 64;
  sp.kernel_size = 32;
  sp.kernel_stride = 16;
  sp.init_blocks = 1;
  sp.local_blocks = local;
  sp.topk_total = topk;
  return sp;
}

// Selections of one (query, group) row, -1 padding dropped.
std::vector<std::pair<int32_t, float>> Row(const std::vector<int32_t>& sel,
                                           const std::vector<float>& scores, int64_t row,
                                           int64_t topk) {
  std::vector<std::pair<int32_t, float>> out;
  for (int64_t i = 0; i < topk; ++i) {
    if (sel[row * topk + i] >= 0) out.push_back({sel[row * topk + i], scores[row * topk + i]});
  }
  return out;
}

void SelectBlocksCase(Harness& h, const kernels::SparseParams& sp, int64_t q_heads, int64_t groups,
                      int64_t d, int64_t first, int64_t tokens, int64_t summary_page_rows = 256,
                      bool tied = false) {
  const int64_t n = first + tokens, topk = sp.topk_total;
  const int64_t n1 = sp.NumK1(n), n2 = sp.NumK2(n);
  // Tied: every summary the same row, so all blocks but the forced ones score the same and
  // both sides must take the lowest ones.
  auto summaries = [&](int64_t rows, uint64_t seed) {
    std::vector<float> v = RandomValues((tied ? 1 : rows) * d, seed);
    if (tied) {
      v.resize(rows * d);
      for (int64_t i = d; i < rows * d; ++i) v[i] = v[i % d];
    }
    return v;
  };
  std::vector<PagedBuffer> k1c, k1g, k2c, k2g;
  for (int64_t g = 0; g < groups; ++g) {
    PagedPair a = MakePaged(h, summaries(n1, 100 + g), n1, d, summary_page_rows);
    PagedPair b = MakePaged(h, summaries(n2, 200 + g), n2, d, summary_page_rows);
    k1c.push_back(a.cpu), k1g.push_back(a.gpu), k2c.push_back(b.cpu), k2g.push_back(b.gpu);
  }
  const std::vector<float> q = RandomValues(tokens * q_heads * d, first + tokens);
  Mat qc(h.cpu, DType::kF32, tokens, q_heads * d),
      qg(h.gpu, DType::kBF16, tokens, q_heads * d, 2 * q_heads * d + 4 * d);
  qc.Set(q);
  qg.Set(q);
  const int64_t cols = groups * topk;
  Mat selc(h.cpu, DType::kI32, tokens, cols), scc(h.cpu, DType::kF32, tokens, cols);
  Mat selg(h.gpu, DType::kI32, tokens, cols), scg(h.gpu, DType::kF32, tokens, cols);
  Mat selg2(h.gpu, DType::kI32, tokens, cols);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  h.cpu.SelectBlocks(qc.t(), q_heads, d, first, k1c, k2c, sp, scale, selc.t(), scc.t());
  h.gpu.SelectBlocks(qg.t(), q_heads, d, first, k1g, k2g, sp, scale, selg.t(), scg.t());
  h.gpu.SelectBlocks(qg.t(), q_heads, d, first, k1g, k2g, sp, scale, selg2.t(), Tensor{});
  h.Sync();
  const std::vector<int32_t> want = selc.GetInt(), got = selg.GetInt();
  const std::vector<float> want_s = scc.Get(), got_s = scg.Get();
  EXPECT_EQ(selg2.GetInt(), got) << "selection without scores differs from with scores";
  int64_t differing = 0, entries = 0, near_tie_violations = 0;
  std::vector<float> common_got, common_want;
  for (int64_t row = 0; row < tokens * groups; ++row) {
    const auto a = Row(want, want_s, row, topk), c = Row(got, got_s, row, topk);
    entries += a.size();
    EXPECT_TRUE(std::is_sorted(c.begin(), c.end())) << "row " << row;
    std::map<int32_t, float> am(a.begin(), a.end()), cm(c.begin(), c.end());
    EXPECT_EQ(a.size(), c.size()) << "row " << row;
    auto lowest = [](const std::map<int32_t, float>& m) {
      float lo = std::numeric_limits<float>::infinity();
      for (auto& [b, s] : m) lo = std::min(lo, s);
      return lo;
    };
    const float tau_a = lowest(am), tau_c = lowest(cm);
    for (auto& [b, s] : cm) {
      if (am.count(b)) {
        if (std::isfinite(s)) common_got.push_back(s), common_want.push_back(am[b]);
        else EXPECT_EQ(s, am[b]) << "forced block " << b << " row " << row;
        continue;
      }
      ++differing;
      near_tie_violations += !(s <= tau_a * (1 + 1.0f / 64) + 1e-30f);
    }
    for (auto& [b, s] : am) {
      if (!cm.count(b)) near_tie_violations += !(s <= tau_c * (1 + 1.0f / 64) + 1e-30f);
    }
  }
  std::printf("    SelectBlocks: %lld of %lld selected entries differ (near-ties)\n",
              static_cast<long long>(differing), static_cast<long long>(entries));
  EXPECT_EQ(near_tie_violations, 0) << "blocks selected by one side only that are not near-ties";
  EXPECT_LE(differing, tied ? 0 : entries / 100) << "too many near-tie differences";
  ExpectClose(common_got, common_want, kBf16Tol, "SelectBlocks pooled scores (bf16)");
}

// Random selections: the diagonal block, up to topk - 1 random causal blocks, ascending,
// -1 padded; sometimes a future block (ignored by both sides).
std::vector<int32_t> RandomSelection(int64_t first, int64_t tokens, int64_t groups, int64_t B,
                                     int64_t topk, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> sel(tokens * groups * topk, -1);
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t bp = (first + t) / B;
    for (int64_t g = 0; g < groups; ++g) {
      std::set<int32_t> s = {static_cast<int32_t>(bp)};
      const int64_t want = std::min<int64_t>(topk - 1, rng() % (topk + 1));
      for (int64_t i = 0; i < 4 * want && static_cast<int64_t>(s.size()) < want + 1; ++i) {
        s.insert(static_cast<int32_t>(rng() % (bp + 1)));
      }
      if (rng() % 5 == 0 && static_cast<int64_t>(s.size()) < topk) s.insert(bp + 1);
      int64_t i = 0;
      for (int32_t b : s) sel[(t * groups + g) * topk + i++] = b;
    }
  }
  return sel;
}

void AttentionCase(Harness& h, int64_t q_heads, int64_t groups, int64_t d, int64_t first,
                   int64_t tokens, bool sparse) {
  const int64_t B = 64, n = first + tokens, topk = 96;
  std::vector<PagedBuffer> kc, kg, vc, vg;
  for (int64_t g = 0; g < groups; ++g) {
    PagedPair k = MakePaged(h, RandomValues(n * d, 300 + g), n, d, B);
    PagedPair v = MakePaged(h, RandomValues(n * d, 400 + g), n, d, B);
    kc.push_back(k.cpu), kg.push_back(k.gpu), vc.push_back(v.cpu), vg.push_back(v.gpu);
  }
  const int64_t qw = q_heads * d, stride = 2 * qw + 2 * groups * d;
  const std::vector<float> q = RandomValues(tokens * qw, n);
  Mat qc(h.cpu, DType::kF32, tokens, qw), qg(h.gpu, DType::kBF16, tokens, qw, stride);
  qc.Set(q);
  qg.Set(q);
  Mat sc(h.cpu, DType::kI32, tokens, groups * topk), sg(h.gpu, DType::kI32, tokens, groups * topk);
  if (sparse) {
    const auto sel = RandomSelection(first, tokens, groups, B, topk, n);
    sc.SetInt(sel);
    sg.SetInt(sel);
  }
  Mat oc(h.cpu, DType::kF32, tokens, qw), og(h.gpu, DType::kBF16, tokens, qw);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  h.cpu.BlockSparseAttention(qc.t(), q_heads, d, first, kc, vc, B, sparse ? sc.t() : Tensor{},
                             topk, scale, oc.t());
  h.gpu.BlockSparseAttention(qg.t(), q_heads, d, first, kg, vg, B, sparse ? sg.t() : Tensor{},
                             topk, scale, og.t());
  h.Sync();
  ExpectClose(og.Get(), oc.Get(), kBf16Tol,
              sparse ? "BlockSparseAttention (selected)" : "BlockSparseAttention (dense)");
}

// Storage-backed decode: per step, views of the stored K/V whose selected blocks point at
// pages fetched elsewhere (here: another buffer's), the same view objects each step reset to
// the stored pages, so the device page tables take only the view's delta (PageTableCache).
void AttentionViewsCase(Harness& h) {
  const int64_t B = 64, d = 128, groups = 2, q_heads = 32, n = 200 * B + 17, topk = 96;
  std::vector<PagedPair> k, v, alt_k, alt_v;
  for (int64_t g = 0; g < groups; ++g) {
    k.push_back(MakePaged(h, RandomValues(n * d, 500 + g), n, d, B));
    v.push_back(MakePaged(h, RandomValues(n * d, 510 + g), n, d, B));
    alt_k.push_back(MakePaged(h, RandomValues(n * d, 520 + g), n, d, B));
    alt_v.push_back(MakePaged(h, RandomValues(n * d, 530 + g), n, d, B));
  }
  std::vector<PagedBuffer> kc(groups), vc(groups), kg(groups), vg(groups);
  std::mt19937 rng(15);
  for (int step = 0; step < 4; ++step) {
    const int64_t first = n - 1, last_block = first / B;
    std::vector<int32_t> sel(groups * topk, -1);
    for (int64_t g = 0; g < groups; ++g) {
      kc[g].ResetView(k[g].cpu), vc[g].ResetView(v[g].cpu);
      kg[g].ResetView(k[g].gpu), vg[g].ResetView(v[g].gpu);
      std::set<int32_t> blocks = {static_cast<int32_t>(last_block)};
      while (blocks.size() < 12) blocks.insert(static_cast<int32_t>(rng() % last_block));
      int64_t i = 0;
      for (int32_t b : blocks) {
        sel[g * topk + i++] = b;
        if (b % 2 == step % 2 && b != last_block) {  // "fetched": another buffer's page
          kc[g].SetViewPage(b, alt_k[g].cpu.page(b)), vc[g].SetViewPage(b, alt_v[g].cpu.page(b));
          kg[g].SetViewPage(b, alt_k[g].gpu.page(b)), vg[g].SetViewPage(b, alt_v[g].gpu.page(b));
        }
      }
    }
    const std::vector<float> q = RandomValues(q_heads * d, 540 + step);
    Mat qc(h.cpu, DType::kF32, 1, q_heads * d), qg(h.gpu, DType::kBF16, 1, q_heads * d);
    qc.Set(q), qg.Set(q);
    Mat sc(h.cpu, DType::kI32, 1, groups * topk), sg(h.gpu, DType::kI32, 1, groups * topk);
    sc.SetInt(sel), sg.SetInt(sel);
    Mat oc(h.cpu, DType::kF32, 1, q_heads * d), og(h.gpu, DType::kBF16, 1, q_heads * d);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    h.cpu.BlockSparseAttention(qc.t(), q_heads, d, first, kc, vc, B, sc.t(), topk, scale, oc.t());
    h.gpu.BlockSparseAttention(qg.t(), q_heads, d, first, kg, vg, B, sg.t(), topk, scale, og.t());
    h.Sync();
    ExpectClose(og.Get(), oc.Get(), kBf16Tol, "BlockSparseAttention (views)");
  }
}

std::vector<OpCase> MakeCases() {
  std::vector<OpCase> c;
  auto add = [&](std::vector<std::string> ops, std::string name,
                 std::function<void(Harness&)> run) {
    c.push_back({std::move(ops), std::move(name), std::move(run)});
  };
  add({"kind", "activation_dtype", "weight_dtype"}, "Properties", PropertiesCase);
  add({"Allocate", "Free", "CopyFromHost", "CopyToHost", "Synchronize"}, "Memory", MemoryCase);
  add({"Copy"}, "Copy", CopyCase);
  add({"CopyManyFromHost", "AllocateHost"}, "CopyManyFromHost", CopyManyFromHostCase);
  add({"BlockSparseAttention"}, "Attention_views", AttentionViewsCase);
  add({"Fill"}, "Fill", FillCase);
  add({"AllReduceSum", "AllGatherCols"}, "CollectivesAlone", CollectivesAloneCase);
  add({"AbortCollectives"}, "AbortAlone", AbortAloneCase);
  add({"FillRandom"}, "FillRandom", FillRandomCase);
  add({"UploadTensor"}, "UploadTensor", UploadCase);
  for (int64_t t : {1, 37}) {
    add({"Embedding"}, "Embedding_T" + std::to_string(t),
        [t](Harness& h) { EmbeddingCase(h, 500, 256, t); });
  }
  // Up to 8 rows (decode): SmallMatMul, including ragged n and k not a multiple of 2048, and a
  // grid of many CTAs; more rows: cuBLAS.
  for (auto shape : {std::tuple{1, 300, 64},
                     {37, 130, 96},
                     {300, 512, 256},
                     {5, 1000, 4096},
                     {8, 77, 2056},
                     {2, 40000, 520},
                     {9, 64, 64}}) {
    const auto [m, n, k] = shape;
    for (DType out : {DType::kBF16, DType::kF32}) {
      add({"MatMul"},
          "MatMul_" + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
              (out == DType::kF32 ? "_f32out" : "_bf16out"),
          [shape, out](Harness& h) {
            MatMulCase(h, std::get<0>(shape), std::get<1>(shape), std::get<2>(shape), out);
          });
    }
  }
  add({"RmsNorm"}, "RmsNorm_layer", [](Harness& h) { RmsNormCase(h, 3, 1, 4096, 4096, 0); });
  add({"RmsNorm"}, "RmsNorm_qk_heads",
      [](Harness& h) { RmsNormCase(h, 17, 32, 128, 4 * 4096, 4096); });
  add({"RmsNorm"}, "RmsNorm_small", [](Harness& h) { RmsNormCase(h, 5, 4, 16, 80, 0); });
  add({"RmsNorm"}, "RmsNorm_wide_groups",  // >= 1024 a group: one CTA per group
      [](Harness& h) { RmsNormCase(h, 4, 2, 1500, 3008, 8); });
  add({"RmsNorm"}, "RmsNorm_wide_vec8",  // ... in 16-byte vectors held in registers
      [](Harness& h) { RmsNormCase(h, 3, 2, 2048, 4104, 8); });
  add({"Rope"}, "Rope_tiny", [](Harness& h) { RopeCase(h, 37, 4, 16, 0, 64, 0); });
  add({"Rope"}, "Rope_strided", [](Harness& h) { RopeCase(h, 5, 32, 128, 1000, 16384, 4096); });
  add({"Rope"}, "Rope_far", [](Harness& h) { RopeCase(h, 3, 32, 128, 1048000, 4096, 0); });
  // Rows of a multiple of 8 elements at 16-byte aligned strides take the vector kernels.
  add({"SiluMul"}, "SiluMul", [](Harness& h) { SiluMulCase(h, 9, 300, 10); });
  add({"SiluMul"}, "SiluMul_vec8", [](Harness& h) { SiluMulCase(h, 9, 512, 8); });
  add({"SigmoidMul"}, "SigmoidMul_vec8", [](Harness& h) { SigmoidMulCase(h, 9, 256); });
  add({"SigmoidMul"}, "SigmoidMul", [](Harness& h) { SigmoidMulCase(h, 9, 100); });
  add({"ResidualRmsNorm"}, "ResidualRmsNorm_decode_row",
      [](Harness& h) { ResidualRmsNormCase(h, 1, 4096, 4096, true); });
  add({"ResidualRmsNorm"}, "ResidualRmsNorm_rows_strided",
      [](Harness& h) { ResidualRmsNormCase(h, 37, 2048, 2056, true); });
  add({"ResidualRmsNorm"}, "ResidualRmsNorm_no_residual",
      [](Harness& h) { ResidualRmsNormCase(h, 5, 4096, 4096, false); });
  add({"ResidualRmsNorm"}, "ResidualRmsNorm_unfused_shape",  // 96 wide: the default sequence
      [](Harness& h) { ResidualRmsNormCase(h, 3, 96, 96, true); });
  add({"HeadRmsNormRope"}, "HeadRmsNormRope_d128_decode",
      [](Harness& h) { HeadRmsNormRopeCase(h, 1, 32, 128, 1048575, 4 * 4096); });
  add({"HeadRmsNormRope"}, "HeadRmsNormRope_d64_rows",
      [](Harness& h) { HeadRmsNormRopeCase(h, 19, 4, 64, 300, 300); });
  add({"HeadRmsNormRope"}, "HeadRmsNormRope_d16_unfused",
      [](Harness& h) { HeadRmsNormRopeCase(h, 7, 4, 16, 5, 64); });
  add({"QkHeadRmsNormRope"}, "QkHeadRmsNormRope_d128_decode",
      [](Harness& h) { QkHeadRmsNormRopeCase(h, 1, 32, 128, 1048575, 0); });
  add({"QkHeadRmsNormRope"}, "QkHeadRmsNormRope_d64_rows",
      [](Harness& h) { QkHeadRmsNormRopeCase(h, 19, 4, 64, 300, 0); });
  add({"QkHeadRmsNormRope"}, "QkHeadRmsNormRope_apart",  // not adjacent: two launches
      [](Harness& h) { QkHeadRmsNormRopeCase(h, 3, 4, 128, 7, 64); });
  add({"RmsNormSigmoidMul"}, "RmsNormSigmoidMul_decode_row",
      [](Harness& h) { RmsNormSigmoidMulCase(h, 1, 4096, 4 * 4096); });
  add({"RmsNormSigmoidMul"}, "RmsNormSigmoidMul_rows",
      [](Harness& h) { RmsNormSigmoidMulCase(h, 37, 2048, 2056); });
  add({"RmsNormSigmoidMul"}, "RmsNormSigmoidMul_unfused_shape",  // 96 wide: the default
      [](Harness& h) { RmsNormSigmoidMulCase(h, 3, 96, 104); });
  add({"MatMulSiluMul"}, "MatMulSiluMul_1x2048x4096",  // the decode GEMV with the SwiGLU
      [](Harness& h) { MatMulSiluMulCase(h, 1, 2048, 4096); });
  add({"MatMulSiluMul"}, "MatMulSiluMul_3x301x520",  // an odd output count: a half group
      [](Harness& h) { MatMulSiluMulCase(h, 3, 301, 520); });
  add({"MatMulSiluMul"}, "MatMulSiluMul_8x7x2056",  // fewer outputs than CTAs
      [](Harness& h) { MatMulSiluMulCase(h, 8, 7, 2056); });
  add({"MatMulSiluMul"}, "MatMulSiluMul_40x300x256",  // prefill rows: cuBLAS, then SiluMul
      [](Harness& h) { MatMulSiluMulCase(h, 40, 300, 256); });
  add({"AddScaled"}, "AddScaled_vec8", [](Harness& h) { AddScaledCase(h, 13, 96); });
  add({"AddScaled"}, "AddScaled", [](Harness& h) { AddScaledCase(h, 13, 90); });
  for (int64_t t : {1, 63, 64, 65, 200}) {
    add({"Lightning"}, "Lightning_h4d16_T" + std::to_string(t),
        [t](Harness& h) { LightningCase(h, 4, 16, {t}); });
  }
  add({"Lightning"}, "Lightning_h4d64_T70", [](Harness& h) { LightningCase(h, 4, 64, {70}); });
  add({"Lightning"}, "Lightning_h32d128_T130",
      [](Harness& h) { LightningCase(h, 32, 128, {130}); });
  // Calls of one token (decode steps) take their own kernel; the state carries between forms.
  add({"Lightning"}, "Lightning_h32d128_decode",
      [](Harness& h) { LightningCase(h, 32, 128, {1, 1, 1}); });
  add({"Lightning"}, "Lightning_h4d16_decode_after_chunk", [](Harness& h) {
    LightningCase(h, 4, 16, {70, 1, 1, 5, 1});
  });
  add({"Lightning"}, "Lightning_h6d64_decode", [](Harness& h) { LightningCase(h, 6, 64, {1, 1}); });
  add({"Lightning"}, "Lightning_h2d32_decode", [](Harness& h) { LightningCase(h, 2, 32, {1}); });
  add({"Lightning"}, "Lightning_split_100_37",
      [](Harness& h) { LightningCase(h, 4, 16, {100, 37}); });
  // Chunk-parallel tensor-core form (>= 128 tokens, d 64/128): ragged last chunk, state
  // carried between calls of both forms, d 64.
  add({"Lightning"}, "Lightning_tc_h32d128_T1000",
      [](Harness& h) { LightningCase(h, 32, 128, {1000}); });
  add({"Lightning"}, "Lightning_tc_split_300_1_70_128",
      [](Harness& h) { LightningCase(h, 32, 128, {300, 1, 70, 128}); });
  add({"Lightning"}, "Lightning_tc_h4d64_T777", [](Harness& h) { LightningCase(h, 4, 64, {777}); });
  add({"WriteRows"}, "WriteRows_d128_strided", [](Harness& h) { WriteRowsCase(h, 128, 136, 8); });
  add({"WriteRows"}, "WriteRows_d128_unaligned", [](Harness& h) { WriteRowsCase(h, 128, 128, 1); });
  add({"WriteRows"}, "WriteRows_d20", [](Harness& h) { WriteRowsCase(h, 20, 23, 0); });
  add({"WindowMeans"}, "WindowMeans_k1", [](Harness& h) { WindowMeansCase(h, 300, 128, 32, 16, 0); });
  add({"WindowMeans"}, "WindowMeans_k2_tail",
      [](Harness& h) { WindowMeansCase(h, 300, 128, 128, 64, 1); });
  add({"WindowMeans"}, "WindowMeans_d16", [](Harness& h) { WindowMeansCase(h, 77, 16, 32, 16, 2); });
  const auto tiny = Params(2, 6), sala = Params(32, 96);
  add({"SelectBlocks"}, "SelectBlocks_tiny_decode",
      [=](Harness& h) { SelectBlocksCase(h, tiny, 4, 2, 16, 1499, 1); });
  add({"SelectBlocks"}, "SelectBlocks_tiny_chunk",
      [=](Harness& h) { SelectBlocksCase(h, tiny, 4, 2, 16, 1300, 200); });
  add({"SelectBlocks"}, "SelectBlocks_tiny_oneshot",
      [=](Harness& h) { SelectBlocksCase(h, tiny, 4, 2, 16, 0, 1500); });
  add({"SelectBlocks"}, "SelectBlocks_sala_chunk",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 2, 128, 8936, 64); });
  add({"SelectBlocks"}, "SelectBlocks_sala_decode",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 2, 128, 8999, 1); });
  // A few queries (decode steps, <= 16 tokens) of 1-16 heads a group and d 64/128: the
  // summaries split over the GPU (select_blocks_few.cu). Long contexts (many chunks of LSE
  // parts), a ragged summary tail, a group of 16 heads in one part of 8 heads (d 64).
  add({"SelectBlocks"}, "SelectBlocks_sala_few_300k",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 2, 128, 300001, 8); });
  add({"SelectBlocks"}, "SelectBlocks_sala_few_16_tokens",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 2, 128, 40000, 16); });
  // Summary pages of 100 rows: 64-summary tiles cross pages (the engine's hold 256).
  add({"SelectBlocks"}, "SelectBlocks_sala_few_odd_pages",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 2, 128, 40000, 3, 100); });
  // Equal scores over three 2048-block slices of the top-k: ties go to the lower block.
  add({"SelectBlocks"}, "SelectBlocks_sala_few_tied_300k",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 2, 128, 300001, 2, 256, true); });
  add({"SelectBlocks"}, "SelectBlocks_sala_chunk_tied",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 2, 128, 8936, 64, 256, true); });
  add({"SelectBlocks"}, "SelectBlocks_h8d64_few",
      [=](Harness& h) { SelectBlocksCase(h, sala, 16, 2, 64, 20011, 3); });
  add({"SelectBlocks"}, "SelectBlocks_h5_few",
      [=](Harness& h) { SelectBlocksCase(h, sala, 10, 2, 128, 12345, 2); });
  // >= 512 queries of 8-16 heads a group: group sums on tensor cores; 32 heads in one group:
  // the cuBLAS path, whose 256 MiB score tile holds ~380 of these queries (three tiles).
  add({"SelectBlocks"}, "SelectBlocks_sala_70k",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 2, 128, 69000, 1000); });
  add({"SelectBlocks"}, "SelectBlocks_h32_70k_three_tiles",
      [=](Harness& h) { SelectBlocksCase(h, sala, 32, 1, 128, 69000, 1000); });
  add({"SelectBlocks"}, "SelectBlocks_h8d64_chunk",
      [=](Harness& h) { SelectBlocksCase(h, sala, 16, 2, 64, 20000, 600); });
  add({"BlockSparseAttention"}, "Attention_tiny_dense",
      [](Harness& h) { AttentionCase(h, 4, 2, 16, 0, 700, false); });
  add({"BlockSparseAttention"}, "Attention_tiny_selected",
      [](Harness& h) { AttentionCase(h, 4, 2, 16, 600, 100, true); });
  // Enough tiles that no tile is split (the prefill shape) and few enough that it is.
  add({"BlockSparseAttention"}, "Attention_tiny_selected_unsplit",
      [](Harness& h) { AttentionCase(h, 4, 2, 16, 0, 700, true); });
  add({"BlockSparseAttention"}, "Attention_sala_selected_unsplit",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 4700, 300, true); });
  add({"BlockSparseAttention"}, "Attention_tiny_straddle",
      [](Harness& h) { AttentionCase(h, 4, 2, 16, 630, 40, true); });
  add({"BlockSparseAttention"}, "Attention_tiny_decode",
      [](Harness& h) { AttentionCase(h, 4, 2, 16, 699, 1, true); });
  // Decode steps on tensor cores (BlockSparseDispatch checks the routing): padded rows (12
  // heads a group), d 64, a long context, and a token that is its block's first key.
  add({"BlockSparseAttention"}, "Attention_h12_decode_tc",
      [](Harness& h) { AttentionCase(h, 24, 2, 128, 3003, 1, true); });
  add({"BlockSparseAttention"}, "Attention_h16d64_decode_tc",
      [](Harness& h) { AttentionCase(h, 16, 1, 64, 1000, 1, true); });
  add({"BlockSparseAttention"}, "Attention_sala_decode_tc_100k",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 100000, 1, true); });
  add({"BlockSparseAttention"}, "Attention_sala_decode_tc_block_start",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 64 * 70, 1, true); });
  // Long enough that the selection bitmap has more words (293) than a CTA has threads: each
  // thread counts a run of words to find its split's first block.
  add({"BlockSparseAttention"}, "Attention_tiny_decode_600k",
      [](Harness& h) { AttentionCase(h, 4, 2, 16, 600000, 1, true); });
  add({"BlockSparseAttention"}, "Attention_tiny_selected_600k",
      [](Harness& h) { AttentionCase(h, 4, 2, 16, 599990, 12, true); });
  add({"BlockSparseAttention"}, "Attention_d64_dense",
      [](Harness& h) { AttentionCase(h, 4, 2, 64, 0, 130, false); });
  add({"BlockSparseAttention"}, "Attention_sala_selected",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 4984, 16, true); });
  add({"BlockSparseAttention"}, "Attention_sala_decode",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 4999, 1, true); });
  add({"BlockSparseAttention"}, "Attention_sala_dense",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 0, 200, false); });
  // Tensor-core path (>= 256 tokens, 8-16 heads a group, d 64/128; BlockSparseDispatch
  // checks the routing): ragged tiles at both ends, padded heads, d 64, dense.
  add({"BlockSparseAttention"}, "Attention_sala_selected_tc_ragged",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 4990, 333, true); });
  add({"BlockSparseAttention"}, "Attention_h12_selected_tc",
      [](Harness& h) { AttentionCase(h, 24, 2, 128, 3003, 290, true); });
  add({"BlockSparseAttention"}, "Attention_h16d64_selected_tc",
      [](Harness& h) { AttentionCase(h, 16, 1, 64, 1000, 300, true); });
  add({"BlockSparseAttention"}, "Attention_sala_dense_tc",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 0, 600, false); });
  add({"BlockSparseAttention"}, "Attention_sala_dense_tc_continued",
      [](Harness& h) { AttentionCase(h, 32, 2, 128, 517, 300, false); });
  return c;
}

const std::vector<OpCase>& Cases() {
  static const std::vector<OpCase> cases = MakeCases();
  return cases;
}

class BackendOpsTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
    cpu_ = NewCpuBackend(0);
    auto gpu = NewCudaBackend(0);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = std::move(gpu).value();
  }
  std::unique_ptr<Backend> cpu_, gpu_;
};

TEST_P(BackendOpsTest, MatchesCpu) {
  const OpCase& c = Cases()[GetParam()];
  Harness h{*cpu_, *gpu_};
  c.run(h);
  const absl::Status s = gpu_->Synchronize();
  EXPECT_TRUE(s.ok()) << s;
}

INSTANTIATE_TEST_SUITE_P(Ops, BackendOpsTest,
                         ::testing::Range(0, static_cast<int>(Cases().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return Cases()[info.param].name;
                         });

// Every virtual method declared in backend.h must be named by some case (runs without a GPU).
// Which BlockSparseAttention calls run on tensor cores (host-only routing; the cases above
// with "_tc" check the numbers).
TEST(BlockSparseDispatch, PrefillOfModelShapesUsesTensorCores) {
  alignas(16) static kernels::cuda::bf16 buffer[8];
  kernels::cuda::DevicePagedRows view;
  view.rows_per_page = 64;
  view.width = 128;
  const kernels::cuda::DevicePagedRows views[2] = {view, view};
  kernels::cuda::BlockSparseArgs a;
  a.q = a.out = buffer;
  a.num_tokens = 8192, a.num_q_heads = 32, a.num_groups = 2, a.head_dim = 128;
  a.q_stride = a.out_stride = 32 * 128;
  a.first_position = 100000;
  a.keys = a.values = views;
  EXPECT_TRUE(kernels::cuda::BlockSparseUsesTensorCores(a));
  EXPECT_EQ(kernels::cuda::BlockSparseSplits(a), 1);
  a.num_tokens = 300;
  EXPECT_TRUE(kernels::cuda::BlockSparseUsesTensorCores(a));
  // A decode step: not the prefill kernel but the decode one, which splits the selected
  // blocks over one-warp CTAs (with a selection; dense attention stays on the SIMT kernel).
  a.num_tokens = 1;
  EXPECT_FALSE(kernels::cuda::BlockSparseUsesTensorCores(a));
  EXPECT_FALSE(kernels::cuda::BlockSparseDecodeUsesTensorCores(a));
  alignas(16) static int32_t selection[96];
  a.selected = selection, a.topk_total = 96;
  EXPECT_TRUE(kernels::cuda::BlockSparseDecodeUsesTensorCores(a));
  EXPECT_GT(kernels::cuda::BlockSparseSplits(a), 1);
  a.num_tokens = 2;  // a few tokens share their blocks' loads on the SIMT kernel
  EXPECT_FALSE(kernels::cuda::BlockSparseDecodeUsesTensorCores(a));
  a.selected = nullptr, a.topk_total = 0;
  a.num_tokens = 8192, a.num_q_heads = 4;  // 2 heads a group would waste 14 of 16 MMA rows
  EXPECT_FALSE(kernels::cuda::BlockSparseUsesTensorCores(a));
  a.num_q_heads = 32, a.block_size = 32;
  EXPECT_FALSE(kernels::cuda::BlockSparseUsesTensorCores(a));
}

TEST(SmallMatMulDispatch, DecodeRowsTakeTheBandwidthKernel) {
  alignas(16) static kernels::cuda::bf16 buffer[8];
  EXPECT_TRUE(kernels::cuda::SmallMatMulApplies(buffer, 4096, buffer, 4096, 1, 4096));
  EXPECT_TRUE(kernels::cuda::SmallMatMulApplies(buffer, 4096, buffer, 4096, 8, 4096));
  EXPECT_FALSE(kernels::cuda::SmallMatMulApplies(buffer, 4096, buffer, 4096, 9, 4096));
  EXPECT_FALSE(kernels::cuda::SmallMatMulApplies(buffer, 4100, buffer, 4100, 1, 4100));
  EXPECT_FALSE(kernels::cuda::SmallMatMulApplies(buffer + 1, 4096, buffer, 4096, 1, 4096));
}

TEST(BackendOpsCoverage, EveryBackendOpHasACase) {
  std::ifstream in(std::string(TOME_SOURCE_DIR) + "/engine/src/backend.h");
  ASSERT_TRUE(in) << "cannot read engine/src/backend.h";
  std::stringstream text;
  text << in.rdbuf();
  const std::string src = text.str();
  const std::regex decl(R"(virtual\s+[^;{(~]*?\b(\w+)\s*\()");
  std::set<std::string> covered;
  for (const OpCase& c : Cases()) covered.insert(c.ops.begin(), c.ops.end());
  int found = 0;
  for (auto it = std::sregex_iterator(src.begin(), src.end(), decl); it != std::sregex_iterator();
       ++it) {
    ++found;
    EXPECT_TRUE(covered.count((*it)[1].str())) << "Backend::" << (*it)[1] << " has no case";
  }
  EXPECT_GE(found, 20) << "the declaration pattern no longer matches backend.h";
}

}  // namespace
}  // namespace tome::engine
