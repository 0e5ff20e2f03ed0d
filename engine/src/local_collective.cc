#include "local_collective.h"

#include <condition_variable>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace tome::engine {
namespace {

// The meeting point of the ranks: slots for each rank's tensor and a reusable barrier.
class Group {
 public:
  explicit Group(int world) : world_(world), slots_(world) {}
  int world() const { return world_; }
  const Tensor*& slot(int rank) { return slots_[rank]; }

  // False once Abort ran (a rank failed and will not come): the caller must not use the
  // other ranks' slots.
  bool Barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    if (aborted_) return false;
    const uint64_t generation = generation_;
    if (++arrived_ == world_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return true;
    }
    cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
    return !aborted_;
  }
  void Abort() {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = true;
    cv_.notify_all();
  }

 private:
  const int world_;
  std::vector<const Tensor*> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool aborted_ = false;
  uint64_t generation_ = 0;
};

float Load(const Tensor& t, int64_t r, int64_t c) {
  const int64_t i = r * t.stride + c;
  if (t.dtype == DType::kBF16) return BFloat16ToFloat(static_cast<const uint16_t*>(t.data)[i]);
  return static_cast<const float*>(t.data)[i];
}

void Store(const Tensor& t, int64_t r, int64_t c, float v) {
  const int64_t i = r * t.stride + c;
  if (t.dtype == DType::kBF16) {
    static_cast<uint16_t*>(t.data)[i] = FloatToBFloat16(v);
  } else {
    static_cast<float*>(t.data)[i] = v;
  }
}

class LocalRank final : public Backend {
 public:
  LocalRank(std::unique_ptr<Backend> inner, std::shared_ptr<Group> group, int rank)
      : inner_(std::move(inner)), group_(std::move(group)), rank_(rank) {}

  DeviceKind kind() const override { return inner_->kind(); }
  DType activation_dtype() const override { return inner_->activation_dtype(); }
  DType weight_dtype() const override { return inner_->weight_dtype(); }
  absl::StatusOr<Buffer> Allocate(int64_t bytes) override {
    // Buffers must free through this wrapper's Free (it forwards).
    auto b = inner_->Allocate(bytes);
    if (!b.ok()) return b.status();
    const int64_t n = b->bytes();
    return Buffer(this, b->release(), n);
  }
  void Free(void* data) override { inner_->Free(data); }
  void UploadTensor(const TensorInfo& src, const Tensor& dst) override {
    inner_->UploadTensor(src, dst);
  }
  void CopyFromHost(const Tensor& dst, const void* host) override {
    inner_->CopyFromHost(dst, host);
  }
  void CopyToHost(const Tensor& src, void* host) override { inner_->CopyToHost(src, host); }
  void Copy(const Tensor& dst, const Tensor& src) override { inner_->Copy(dst, src); }
  void Fill(const Tensor& dst, float value) override { inner_->Fill(dst, value); }
  void FillRandom(const Tensor& dst, uint64_t seed, float mean, float stddev) override {
    inner_->FillRandom(dst, seed, mean, stddev);
  }
  absl::Status Synchronize() override {
    absl::Status s = inner_->Synchronize();
    if (s.ok() && !error_.ok()) s = std::exchange(error_, absl::OkStatus());
    return s;
  }
  void Embedding(const Tensor& table, absl::Span<const int32_t> ids, float scale,
                 const Tensor& out) override {
    inner_->Embedding(table, ids, scale, out);
  }
  void MatMul(const Tensor& x, const Tensor& w, const Tensor& y) override {
    inner_->MatMul(x, w, y);
  }
  void RmsNorm(const Tensor& x, const Tensor& weight, int64_t groups, float eps) override {
    inner_->RmsNorm(x, weight, groups, eps);
  }
  void Rope(const Tensor& x, int64_t heads, int64_t head_dim, int64_t first_position,
            float theta) override {
    inner_->Rope(x, heads, head_dim, first_position, theta);
  }
  void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    inner_->SiluMul(gate, up, out);
  }
  void SigmoidMul(const Tensor& x, const Tensor& z) override { inner_->SigmoidMul(x, z); }
  void AddScaled(const Tensor& h, const Tensor& x, float alpha) override {
    inner_->AddScaled(h, x, alpha);
  }
  void Lightning(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 int64_t head_dim, const Tensor& slopes, float scale, const Tensor& state,
                 const Tensor& out) override {
    inner_->Lightning(q, k, v, heads, head_dim, slopes, scale, state, out);
  }
  void WriteRows(PagedBuffer& dst, int64_t first_row, const Tensor& rows) override {
    inner_->WriteRows(dst, first_row, rows);
  }
  void WindowMeans(const PagedBuffer& keys, int64_t first_window, int64_t window,
                   int64_t stride, const Tensor& out) override {
    inner_->WindowMeans(keys, first_window, window, stride, out);
  }
  void SelectBlocks(const Tensor& q, int64_t q_heads, int64_t head_dim, int64_t first_position,
                    absl::Span<const PagedBuffer> k1, absl::Span<const PagedBuffer> k2,
                    const kernels::SparseParams& params, float scale, const Tensor& selected,
                    const Tensor& scores) override {
    inner_->SelectBlocks(q, q_heads, head_dim, first_position, k1, k2, params, scale, selected,
                         scores);
  }
  void BlockSparseAttention(const Tensor& q, int64_t q_heads, int64_t head_dim,
                            int64_t first_position, absl::Span<const PagedBuffer> keys,
                            absl::Span<const PagedBuffer> values, int64_t block_size,
                            const Tensor& selected, int64_t topk_total, float scale,
                            const Tensor& out) override {
    inner_->BlockSparseAttention(q, q_heads, head_dim, first_position, keys, values, block_size,
                                 selected, topk_total, scale, out);
  }

  void AllReduceSum(const Tensor& x) override {
    Check(inner_->Synchronize());
    group_->slot(rank_) = &x;
    if (!group_->Barrier()) return CheckAborted();
    bool same = true;
    for (int q = 0; q < group_->world(); ++q) {
      const Tensor& o = *group_->slot(q);
      same = same && o.rows == x.rows && o.cols == x.cols;
    }
    sum_.assign(x.rows * x.cols, 0.0f);
    if (same) {
      for (int q = 0; q < group_->world(); ++q) {  // rank order on every rank: equal results
        const Tensor& o = *group_->slot(q);
        for (int64_t r = 0; r < x.rows; ++r) {
          for (int64_t c = 0; c < x.cols; ++c) sum_[r * x.cols + c] += Load(o, r, c);
        }
      }
    }
    if (!group_->Barrier()) return CheckAborted();  // every rank has read every slot
    if (!same) {
      Check(absl::InvalidArgumentError("AllReduceSum: ranks passed different shapes"));
      return;
    }
    for (int64_t r = 0; r < x.rows; ++r) {
      for (int64_t c = 0; c < x.cols; ++c) Store(x, r, c, sum_[r * x.cols + c]);
    }
  }

  void AllGatherCols(const Tensor& local, const Tensor& full) override {
    Check(inner_->Synchronize());
    group_->slot(rank_) = &local;
    if (!group_->Barrier()) return CheckAborted();
    const int64_t c = local.cols;
    bool ok = full.cols == c * group_->world() && full.rows == local.rows;
    for (int q = 0; ok && q < group_->world(); ++q) {
      const Tensor& o = *group_->slot(q);
      ok = o.rows == local.rows && o.cols == c;
    }
    if (ok) {
      for (int q = 0; q < group_->world(); ++q) {
        const Tensor& o = *group_->slot(q);
        for (int64_t r = 0; r < full.rows; ++r) {
          for (int64_t j = 0; j < c; ++j) Store(full, r, q * c + j, Load(o, r, j));
        }
      }
    }
    if (!group_->Barrier()) return CheckAborted();
    if (!ok) Check(absl::InvalidArgumentError("AllGatherCols: shapes differ between ranks"));
  }

  void AbortCollectives() override { group_->Abort(); }

 private:
  void Check(const absl::Status& s) {
    if (!s.ok() && error_.ok()) error_ = s;
  }
  void CheckAborted() {
    Check(absl::AbortedError(
        "tensor-parallel collectives were aborted (another rank of the group failed)"));
  }

  std::unique_ptr<Backend> inner_;
  std::shared_ptr<Group> group_;
  const int rank_;
  std::vector<float> sum_;
  absl::Status error_;
};

}  // namespace

std::vector<std::unique_ptr<Backend>> NewLocalCollectiveGroup(
    std::vector<std::unique_ptr<Backend>> ranks) {
  auto group = std::make_shared<Group>(static_cast<int>(ranks.size()));
  std::vector<std::unique_ptr<Backend>> out;
  for (size_t i = 0; i < ranks.size(); ++i) {
    out.push_back(std::make_unique<LocalRank>(std::move(ranks[i]), group, static_cast<int>(i)));
  }
  return out;
}

}  // namespace tome::engine
