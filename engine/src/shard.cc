#include "shard.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tome::engine {
namespace {

absl::Status Divisible(int64_t value, const char* name, int world, const char* why) {
  if (value % world == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("tensor_parallel=", world, " does not divide ",
                                                 name, "=", value, why));
}

}  // namespace

absl::Status ValidateShard(const ModelConfig& c, const ShardSpec& s) {
  if (s.world < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_parallel must be at least 1 (got ", s.world, ")"));
  }
  if (s.rank < 0 || s.rank >= s.world) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor-parallel rank ", s.rank, " is outside [0, ", s.world, ")"));
  }
  if (s.world == 1) return absl::OkStatus();
  if (c.lightning_heads % s.world != 0) {
    return Divisible(c.lightning_heads, "lightning_nh", s.world,
                     " (each rank owns whole Lightning heads)");
  }
  const int64_t group = c.num_attention_heads / c.num_kv_heads;
  if (c.num_kv_heads % s.world != 0) {
    // More ranks than groups: R ranks share a group, each with group/R of its query heads.
    if (s.world % c.num_kv_heads != 0 || group % (s.world / c.num_kv_heads) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor_parallel=", s.world, " does not divide num_key_value_heads=", c.num_kv_heads,
          " and is not a multiple of it that splits each group's ", group,
          " query heads evenly (ranks own whole KV groups, or equal parts of one)"));
    }
  }
  if (c.intermediate_size % s.world != 0) {
    return Divisible(c.intermediate_size, "intermediate_size", s.world,
                     " (each rank owns an equal share of the MLP columns)");
  }
  if (c.vocab_size < s.world) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor_parallel=", s.world, " is larger than vocab_size=", c.vocab_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardDims> ComputeShardDims(const ModelConfig& c, const ShardSpec& s) {
  if (absl::Status st = ValidateShard(c, s); !st.ok()) return st;
  ShardDims d;
  const int64_t r = s.rank, n = s.world;
  d.lightning_heads = c.lightning_heads / n;
  d.lightning_head0 = r * d.lightning_heads;
  const int64_t group = c.num_attention_heads / c.num_kv_heads;
  if (c.num_kv_heads % n == 0) {  // whole groups
    d.kv_heads = c.num_kv_heads / n;
    d.kv_head0 = r * d.kv_heads;
    d.q_heads = d.kv_heads * group;
    d.q_head0 = d.kv_head0 * group;
  } else {  // R = n / G ranks per group, each with group / R of its query heads
    const int64_t ranks_per_group = n / c.num_kv_heads, part = r % ranks_per_group;
    d.kv_heads = 1;
    d.kv_head0 = r / ranks_per_group;
    d.q_heads = group / ranks_per_group;
    d.q_head0 = d.kv_head0 * group + part * d.q_heads;
    d.first_of_group = part == 0;
  }
  d.select_heads = d.kv_heads * group;
  d.select_head0 = d.kv_head0 * group;
  d.intermediate = c.intermediate_size / n;
  d.intermediate0 = r * d.intermediate;
  d.vocab_rows = (c.vocab_size + n - 1) / n;
  d.vocab0 = r * d.vocab_rows;
  d.vocab_valid = std::clamp<int64_t>(c.vocab_size - d.vocab0, 0, d.vocab_rows);
  return d;
}

TensorInfo SliceRows(const TensorInfo& t, int64_t first, int64_t n) {
  const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
  const int64_t row_bytes = cols * TensorDTypeSize(t.dtype);
  TensorInfo s = t;
  s.shape = {n, cols};
  s.data = t.data + first * row_bytes;
  s.num_bytes = n * row_bytes;
  return s;
}

TensorInfo SliceCols(const TensorInfo& t, int64_t first, int64_t n,
                     std::vector<uint8_t>* storage) {
  const int64_t rows = t.shape[0], cols = t.shape.size() == 2 ? t.shape[1] : 1;
  const int64_t elem = TensorDTypeSize(t.dtype);
  storage->resize(rows * n * elem);
  for (int64_t i = 0; i < rows; ++i) {
    std::memcpy(storage->data() + i * n * elem, t.data + (i * cols + first) * elem, n * elem);
  }
  TensorInfo s = t;
  s.shape = {rows, n};
  s.data = storage->data();
  s.num_bytes = rows * n * elem;
  return s;
}

}  // namespace tome::engine
