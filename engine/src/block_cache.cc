#include "tome/engine/block_cache.h"

#include "absl/strings/str_cat.h"
#include "backend.h"
#include "tome/base/status_macros.h"

namespace tome::engine {

absl::StatusOr<BlockCache::Block> BlockCache::Get(const std::string& source_id, StateSource& source,
                                                  int32_t layer, int32_t head, int64_t index,
                                                  int64_t rows, int64_t width,
                                                  int64_t element_bytes) {
  const Key key{source_id, layer, head, index};
  const int64_t half = rows * width * element_bytes;  // keys or values
  std::string bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = device_.entries.find(key); it != device_.entries.end()) {
      device_.order.splice(device_.order.begin(), device_.order, it->second.second);
      ++stats_.device_hits;
      return it->second.first;
    }
    if (auto it = host_.entries.find(key); it != host_.entries.end()) {
      host_.order.splice(host_.order.begin(), host_.order, it->second.second);
      bytes = it->second.first;
      ++stats_.host_hits;
    }
  }
  if (bytes.empty()) {
    // The record may hold a longer prefix of the block (GetState semantics): its first rows.
    TOME_ASSIGN_OR_RETURN(bytes, source.Get({StateRecordKind::kKvBlock, layer, head, index, rows}));
    const int64_t stored_rows = static_cast<int64_t>(bytes.size()) / (2 * width * element_bytes);
    if (stored_rows < rows || static_cast<int64_t>(bytes.size()) != 2 * stored_rows * width * element_bytes) {
      return absl::DataLossError(absl::StrCat("stored KV block ", index, " of layer ", layer,
                                              " head ", head, " has the wrong size"));
    }
    if (stored_rows != rows) {
      bytes.erase(rows * width * element_bytes, (stored_rows - rows) * width * element_bytes);
      bytes.resize(2 * half);
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.source_reads;
    stats_.bytes_read += static_cast<int64_t>(bytes.size());
    if (host_budget_ > 0 && !host_.entries.count(key)) {
      host_.order.push_front(key);
      host_.entries[key] = {bytes, host_.order.begin()};
      host_.bytes += static_cast<int64_t>(bytes.size());
      while (host_.bytes > host_budget_ && host_.order.size() > 1) {
        auto victim = host_.entries.find(host_.order.back());
        host_.bytes -= static_cast<int64_t>(victim->second.first.size());
        host_.entries.erase(victim);
        host_.order.pop_back();
      }
    }
  }
  // Into backend memory.
  Block block;
  for (int part = 0; part < 2; ++part) {
    TOME_ASSIGN_OR_RETURN(Buffer buffer, backend_->Allocate(half));
    auto page = std::make_shared<Buffer>(std::move(buffer));
    const DType dtype = element_bytes == 4 ? DType::kF32 : DType::kBF16;
    backend_->CopyFromHost(Tensor{page->data(), dtype, rows, width, width},
                           bytes.data() + part * half);
    (part == 0 ? block.keys : block.values) = std::move(page);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!device_.entries.count(key)) {
    device_.order.push_front(key);
    device_.entries[key] = {block, device_.order.begin()};
    device_.bytes += 2 * half;
    // Evict the least recently used; blocks still in use stay alive through their holders.
    while (device_.bytes > device_budget_ && device_.order.size() > 1) {
      auto victim = device_.entries.find(device_.order.back());
      device_.bytes -= victim->second.first.keys->bytes() + victim->second.first.values->bytes();
      device_.entries.erase(victim);
      device_.order.pop_back();
      ++stats_.device_evictions;
    }
  }
  return block;
}

BlockCacheStats BlockCache::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  BlockCacheStats s = stats_;
  s.device_bytes = device_.bytes;
  s.host_bytes = host_.bytes;
  return s;
}

}  // namespace tome::engine
