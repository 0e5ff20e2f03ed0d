#include "tome/engine/block_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backend.h"
#include "tome/base/status_macros.h"

namespace tome::engine {

BlockCache::BlockCache(std::vector<Backend*> backends, int64_t device_budget_bytes,
                       int64_t host_budget_bytes)
    : backends_(std::move(backends)),
      device_budget_(device_budget_bytes),
      host_budget_(host_budget_bytes),
      devices_(backends_.size()) {}

absl::StatusOr<BlockCache::Block> BlockCache::Get(int device, const std::string& source_id,
                                                  StateSource& source, int32_t layer, int32_t head,
                                                  int64_t index, int64_t rows, int64_t width,
                                                  int64_t element_bytes) {
  const BlockId block{head, index};
  TOME_ASSIGN_OR_RETURN(std::vector<Block> blocks,
                        GetMany(device, source_id, source, layer, absl::MakeConstSpan(&block, 1),
                                rows, width, element_bytes));
  return std::move(blocks[0]);
}

absl::StatusOr<std::vector<BlockCache::Block>> BlockCache::GetMany(
    int device, const std::string& source_id, StateSource& source, int32_t layer,
    absl::Span<const BlockId> blocks, int64_t rows, int64_t width, int64_t element_bytes) {
  if (device < 0 || device >= static_cast<int>(backends_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the block cache has no device ", device));
  }
  std::vector<Block> out;
  out.reserve(blocks.size());
  for (size_t i = 0; i < blocks.size(); i += kStateReadBatch) {
    TOME_ASSIGN_OR_RETURN(std::vector<Block> part,
                          GetBatch(device, source_id, source, layer,
                                   blocks.subspan(i, std::min(kStateReadBatch, blocks.size() - i)),
                                   rows, width, element_bytes));
    for (Block& block : part) out.push_back(std::move(block));
  }
  return out;
}

absl::StatusOr<std::vector<BlockCache::Block>> BlockCache::GetBatch(
    int device, const std::string& source_id, StateSource& source, int32_t layer,
    absl::Span<const BlockId> blocks, int64_t rows, int64_t width, int64_t element_bytes) {
  const int64_t half = rows * width * element_bytes;  // keys or values
  Backend* backend = backends_[device];
  Lru<Block>& pool = devices_[device];  // this device's tier 1
  std::vector<Block> out(blocks.size());
  std::vector<std::string> bytes(blocks.size());  // stored bytes of blocks not on the device
  std::vector<size_t> missing;                    // in neither tier
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Key key{source_id, layer, blocks[i].head, blocks[i].index};
      if (auto it = pool.entries.find(key); it != pool.entries.end()) {
        pool.order.splice(pool.order.begin(), pool.order, it->second.second);
        ++stats_.device_hits;
        out[i] = it->second.first;
      } else if (auto it = host_.entries.find(key); it != host_.entries.end()) {
        host_.order.splice(host_.order.begin(), host_.order, it->second.second);
        bytes[i] = it->second.first;
        ++stats_.host_hits;
      } else {
        missing.push_back(i);
      }
    }
  }
  if (!missing.empty()) {
    std::vector<StateRecordKey> keys;
    keys.reserve(missing.size());
    for (size_t i : missing) {
      keys.push_back({StateRecordKind::kKvBlock, layer, blocks[i].head, blocks[i].index, rows});
    }
    std::vector<absl::StatusOr<std::string>> values = source.GetMany(keys);
    if (values.size() != keys.size()) {
      return absl::InternalError("the state source answered a different number of records");
    }
    int64_t read = 0;
    for (size_t j = 0; j < missing.size(); ++j) {
      const size_t i = missing[j];
      TOME_RETURN_IF_ERROR(values[j].status());
      std::string& value = *values[j];
      // The record may hold a longer prefix of the block (GetState semantics): its first rows.
      const int64_t stored_rows = static_cast<int64_t>(value.size()) / (2 * width * element_bytes);
      if (stored_rows < rows ||
          static_cast<int64_t>(value.size()) != 2 * stored_rows * width * element_bytes) {
        return absl::DataLossError(absl::StrCat("stored KV block ", blocks[i].index, " of layer ",
                                                layer, " head ", blocks[i].head,
                                                " has the wrong size"));
      }
      if (stored_rows != rows) {
        value.erase(rows * width * element_bytes, (stored_rows - rows) * width * element_bytes);
        value.resize(2 * half);
      }
      read += static_cast<int64_t>(value.size());
      bytes[i] = std::move(value);
    }
    std::lock_guard<std::mutex> lock(mu_);
    stats_.source_reads += static_cast<int64_t>(missing.size());
    stats_.bytes_read += read;
    for (size_t i : missing) {
      const Key key{source_id, layer, blocks[i].head, blocks[i].index};
      if (host_budget_ <= 0 || host_.entries.count(key)) continue;
      host_.order.push_front(key);
      host_.entries[key] = {bytes[i], host_.order.begin()};
      host_.bytes += static_cast<int64_t>(bytes[i].size());
      while (host_.bytes > host_budget_ && host_.order.size() > 1) {
        auto victim = host_.entries.find(host_.order.back());
        host_.bytes -= static_cast<int64_t>(victim->second.first.size());
        host_.entries.erase(victim);
        host_.order.pop_back();
      }
    }
  }
  // Into backend memory: pages for every block not on the device, filled by one upload.
  const DType dtype = element_bytes == 4 ? DType::kF32 : DType::kBF16;
  std::vector<HostPiece> pieces;
  std::vector<size_t> uploaded;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (out[i].keys) continue;  // on the device already
    for (int part = 0; part < 2; ++part) {
      TOME_ASSIGN_OR_RETURN(Buffer buffer, backend->Allocate(half));
      auto page = std::make_shared<Buffer>(std::move(buffer));
      pieces.push_back(
          {Tensor{page->data(), dtype, rows, width, width}, bytes[i].data() + part * half});
      (part == 0 ? out[i].keys : out[i].values) = std::move(page);
    }
    uploaded.push_back(i);
  }
  backend->CopyManyFromHost(pieces);
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i : uploaded) {
    const Key key{source_id, layer, blocks[i].head, blocks[i].index};
    if (pool.entries.count(key)) continue;
    pool.order.push_front(key);
    pool.entries[key] = {out[i], pool.order.begin()};
    pool.bytes += 2 * half;
    // Evict the least recently used; blocks still in use stay alive through their holders.
    while (pool.bytes > device_budget_ && pool.order.size() > 1) {
      auto victim = pool.entries.find(pool.order.back());
      pool.bytes -= victim->second.first.keys->bytes() + victim->second.first.values->bytes();
      pool.entries.erase(victim);
      pool.order.pop_back();
      ++stats_.device_evictions;
    }
  }
  return out;
}

BlockCacheStats BlockCache::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  BlockCacheStats s = stats_;
  for (const Lru<Block>& device : devices_) s.device_bytes += device.bytes;
  s.host_bytes = host_.bytes;
  return s;
}

}  // namespace tome::engine
