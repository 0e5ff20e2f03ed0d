// Streaming top-k for block selection (internal to the CPU kernels).
#pragma once

#include <cstdint>
#include <limits>

namespace tome::kernels::cpu {

// Keeps the k best of blocks offered in ascending index order, ranked by (score desc,
// index asc): a later block enters only with a strictly larger score than the k-th.
class TopK {
 public:
  // Starts an empty selection kept in index[0..k) and score[0..k), best first.
  void Reset(int64_t k, int32_t* index, float* score) {
    k_ = k;
    index_ = index;
    score_ = score;
    size_ = 0;
  }
  // Scores at or below this cannot enter.
  float threshold() const {
    return size_ == k_ ? score_[k_ - 1] : -std::numeric_limits<float>::infinity();
  }
  bool full() const { return size_ == k_; }
  void Offer(int32_t b, float s) {
    if (size_ == k_) {
      if (!(s > score_[k_ - 1])) return;
      --size_;
    }
    int64_t i = size_++;
    for (; i > 0 && s > score_[i - 1]; --i) {
      score_[i] = score_[i - 1];
      index_[i] = index_[i - 1];
    }
    score_[i] = s;
    index_[i] = b;
  }
  int64_t size() const { return size_; }

 private:
  int64_t k_ = 0, size_ = 0;
  int32_t* index_ = nullptr;
  float* score_ = nullptr;
};

}  // namespace tome::kernels::cpu
