#include "tome/engine/block_cache.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "backend.h"
#include "fetch_timer.h"
#include "slot_pool.h"
#include "tome/base/status_macros.h"
#include "tome/base/work_pool.h"

namespace tome::engine {
namespace {

// Host-tier chunks: few enough allocations (pinning) for gigabytes, small enough not to
// overshoot a small budget by much.
constexpr int64_t kMaxHostChunkBytes = int64_t{64} << 20;
constexpr int64_t kMaxDeviceChunkBytes = int64_t{8} << 20;

}  // namespace

template <typename V>
int64_t BlockCache::Lru<V>::Insert(const Key& key, V value, int64_t value_bytes, int64_t budget) {
  order.push_front(key);
  entries[key] = Entry{std::move(value), value_bytes, order.begin()};
  bytes += value_bytes;
  int64_t evicted = 0;
  // Blocks still in use stay alive through their holders.
  while (bytes > budget && order.size() > 1) {
    auto victim = entries.find(order.back());
    bytes -= victim->second.bytes;
    entries.erase(victim);
    order.pop_back();
    ++evicted;
  }
  return evicted;
}

BlockCache::BlockCache(std::vector<Backend*> backends, int64_t device_budget_bytes,
                       int64_t host_budget_bytes, int read_threads)
    : backends_(std::move(backends)),
      device_budget_(device_budget_bytes),
      host_budget_(host_budget_bytes),
      host_chunk_bytes_(std::clamp<int64_t>(host_budget_bytes, 0, kMaxHostChunkBytes)),
      devices_(backends_.size()),
      read_pool_(std::make_unique<WorkPool>(std::max(0, read_threads))) {}

BlockCache::~BlockCache() = default;

absl::Status BlockCache::ReserveHostMemory() {
  if (host_budget_ <= 0 || backends_.empty()) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t reserved = 0; reserved + host_chunk_bytes_ <= host_budget_;
       reserved += host_chunk_bytes_) {
    TOME_ASSIGN_OR_RETURN(Backend::HostMemory chunk, backends_[0]->AllocateHost(host_chunk_bytes_));
    host_device_readable_ = chunk.device_readable;
    host_reserve_.push_back(std::move(chunk.data));
    if (!chunk.device_readable) break;  // plain heap memory: as cheap to allocate later
  }
  return absl::OkStatus();
}

int64_t BlockCache::InternSource(const std::string& source_id) {
  return source_ids_.try_emplace(source_id, static_cast<int64_t>(source_ids_.size())).first->second;
}

absl::StatusOr<std::shared_ptr<void>> BlockCache::HostChunk(int64_t bytes) {
  if (bytes <= host_chunk_bytes_ && !host_reserve_.empty()) {
    std::shared_ptr<void> chunk = std::move(host_reserve_.back());
    host_reserve_.pop_back();
    return chunk;
  }
  TOME_ASSIGN_OR_RETURN(Backend::HostMemory chunk, backends_[0]->AllocateHost(bytes));
  host_device_readable_ = chunk.device_readable;
  return std::move(chunk.data);
}

absl::StatusOr<std::shared_ptr<void>> BlockCache::TakeSlot(int device, int64_t slot_bytes) {
  std::unique_ptr<SlotPool>& pool = pools_[{device, slot_bytes}];
  if (pool == nullptr) {
    if (device < 0) {
      pool = std::make_unique<SlotPool>(slot_bytes,
                                        std::max<int64_t>(1, host_chunk_bytes_ / slot_bytes),
                                        [this](int64_t bytes) { return HostChunk(bytes); });
    } else {
      Backend* backend = backends_[device];
      const int64_t per_chunk = std::clamp<int64_t>(device_budget_ / slot_bytes / 8, 1,
                                                    kMaxDeviceChunkBytes / slot_bytes);
      pool = std::make_unique<SlotPool>(
          slot_bytes, per_chunk, [backend](int64_t bytes) -> absl::StatusOr<std::shared_ptr<void>> {
            TOME_ASSIGN_OR_RETURN(Buffer buffer, backend->Allocate(bytes));
            auto owner = std::make_shared<Buffer>(std::move(buffer));
            return std::shared_ptr<void>(owner, owner->data());
          });
    }
  }
  return pool->Take();
}

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
    absl::Span<const BlockId> blocks, int64_t rows, int64_t width, int64_t element_bytes,
    std::vector<std::shared_ptr<void>>* upload_pins) {
  if (device < 0 || device >= static_cast<int>(backends_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the block cache has no device ", device));
  }
  const int64_t half = rows * width * element_bytes;  // keys or values
  const int64_t block_bytes = 2 * half;
  const bool host_tier = host_budget_ > 0;
  Backend* backend = backends_[device];
  Lru<Block>& pool = devices_[device];  // this device's tier 1
  std::vector<Block> out(blocks.size());
  // The stored bytes (keys, then values) of blocks not on the device: a host-tier slot, or
  // without a host tier the record as read.
  std::vector<std::shared_ptr<void>> host(blocks.size());
  std::vector<std::string> records(blocks.size());
  std::vector<size_t> missing;  // in neither tier
  int64_t source_key = 0;
  {
    ScopedFetchTime timed(FetchPhase::kLookup);
    timed.items = static_cast<int64_t>(blocks.size());
    std::lock_guard<std::mutex> lock(mu_);
    source_key = InternSource(source_id);
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Key key{source_key, layer, blocks[i].head, blocks[i].index};
      if (auto it = pool.entries.find(key); it != pool.entries.end()) {
        pool.order.splice(pool.order.begin(), pool.order, it->second.position);
        ++stats_.device_hits;
        out[i] = it->second.value;
      } else if (auto it = host_.entries.find(key); it != host_.entries.end()) {
        host_.order.splice(host_.order.begin(), host_.order, it->second.position);
        host[i] = it->second.value;
        ++stats_.host_hits;
      } else {
        missing.push_back(i);
      }
    }
  }
  // Misses are read kStateReadBatch at a time (the store's batched read), the batches in
  // parallel on the read pool: each fills its own blocks' host slots (or records).
  auto read_batch = [&](size_t first) -> absl::Status {
    const size_t count = std::min(kStateReadBatch, missing.size() - first);
    std::vector<StateRecordKey> keys;
    keys.reserve(count);
    for (size_t j = first; j < first + count; ++j) {
      const size_t i = missing[j];
      keys.push_back({StateRecordKind::kKvBlock, layer, blocks[i].head, blocks[i].index, rows});
    }
    if (host_tier) {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t j = 0; j < count; ++j) {
        TOME_ASSIGN_OR_RETURN(host[missing[first + j]], TakeSlot(-1, block_bytes));
      }
    }
    // Each record's first `rows` keys, then its first `rows` values (it may hold a longer
    // prefix of the block: GetState semantics), straight into the block's host-tier slot.
    std::vector<bool> seen(count, false);
    size_t visited = 0;
    TOME_RETURN_IF_ERROR(source.ReadMany(keys, [&](size_t j, absl::string_view value) {
      if (j >= count || seen[j]) return absl::InternalError("the state source read a record twice");
      seen[j] = true;
      ++visited;
      const size_t i = missing[first + j];
      const int64_t size = static_cast<int64_t>(value.size());
      const int64_t stored_rows = size / (2 * width * element_bytes);
      if (stored_rows < rows || size != 2 * stored_rows * width * element_bytes) {
        return absl::DataLossError(absl::StrCat("stored KV block ", blocks[i].index, " of layer ",
                                                layer, " head ", blocks[i].head,
                                                " has the wrong size"));
      }
      char* slot = nullptr;
      if (host_tier) {
        slot = static_cast<char*>(host[i].get());
      } else {
        records[i].resize(block_bytes);
        slot = records[i].data();
      }
      std::memcpy(slot, value.data(), half);
      std::memcpy(slot + half, value.data() + size / 2, half);
      return absl::OkStatus();
    }));
    if (visited != count) {
      return absl::InternalError("the state source visited fewer records than asked for");
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t j = 0; host_tier && j < count; ++j) {
      const size_t i = missing[first + j];
      const Key key{source_key, layer, blocks[i].head, blocks[i].index};
      if (!host_.entries.contains(key)) host_.Insert(key, host[i], block_bytes, host_budget_);
    }
    stats_.source_reads += static_cast<int64_t>(count);
    stats_.bytes_read += static_cast<int64_t>(count) * block_bytes;
    return absl::OkStatus();
  };
  std::optional<ScopedFetchTime> reading;
  if (!missing.empty()) reading.emplace(FetchPhase::kStoreRead);
  const size_t batches = (missing.size() + kStateReadBatch - 1) / kStateReadBatch;
  std::vector<absl::Status> read(batches);
  read_pool_->Run(batches, [&](size_t b) { read[b] = read_batch(b * kStateReadBatch); });
  for (const absl::Status& status : read) TOME_RETURN_IF_ERROR(status);
  if (reading) reading->items = static_cast<int64_t>(missing.size());
  reading.reset();
  // Into backend memory: a slot (keys, then values) for every block not on the device,
  // filled by one upload that reads host-tier slots in place where the backend can.
  ScopedFetchTime uploading(FetchPhase::kUpload);
  const DType dtype = element_bytes == 4 ? DType::kF32 : DType::kBF16;
  std::vector<HostPiece> pieces;
  std::vector<size_t> uploaded;
  bool in_place = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_place = host_device_readable_;
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (out[i].keys) continue;  // on the device already
      TOME_ASSIGN_OR_RETURN(std::shared_ptr<void> slot, TakeSlot(device, block_bytes));
      const char* bytes = host[i] ? static_cast<const char*>(host[i].get()) : records[i].data();
      const bool read_in_place = host[i] != nullptr && in_place;
      for (int part = 0; part < 2; ++part) {
        void* dst = static_cast<char*>(slot.get()) + part * half;
        pieces.push_back({Tensor{dst, dtype, rows, width, width}, bytes + part * half,
                          read_in_place, read_in_place && upload_pins != nullptr});
      }
      if (read_in_place && upload_pins != nullptr) upload_pins->push_back(host[i]);
      out[i].keys = slot;
      out[i].values = std::shared_ptr<void>(slot, static_cast<char*>(slot.get()) + half);
      uploaded.push_back(i);
    }
  }
  backend->CopyManyFromHost(pieces);
  uploading.items = static_cast<int64_t>(uploaded.size());
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i : uploaded) {
    const Key key{source_key, layer, blocks[i].head, blocks[i].index};
    if (pool.entries.count(key)) continue;
    stats_.device_evictions += pool.Insert(key, out[i], block_bytes, device_budget_);
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
