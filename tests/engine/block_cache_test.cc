// BlockCache on the CPU backend, through its interface: blocks come back with the stored
// bytes from whichever tier holds them, the tiers stay within their budgets, a block on the
// device when a fetch starts is a hit even if the fetch evicts it, held blocks survive
// eviction, uploads read host slots in place only while the caller pins them, and store
// errors reach the caller. (OnDemandTest checks whole forward passes.)
#include "tome/engine/block_cache.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend.h"
#include "gtest/gtest.h"
#include "tome/base/status_macros.h"

namespace tome::engine {
namespace {

constexpr int64_t kRows = 4, kWidth = 3, kElem = 4;
constexpr int64_t kBlockBytes = 2 * kRows * kWidth * kElem;

// Random records for (layer, head, index); counts reads.
class FakeSource : public StateSource {
 public:
  absl::StatusOr<std::string> Get(const StateRecordKey& key) override {
    ++reads;
    if (key.kind != StateRecordKind::kKvBlock || key.index < 0) {
      return absl::NotFoundError("no such record");
    }
    return Record(key.layer, key.head, key.index);
  }
  static std::string Record(int32_t layer, int32_t head, int64_t index) {
    std::mt19937 rng(static_cast<uint32_t>(layer * 1000003 + head * 1009 + index));
    std::string bytes(kBlockBytes, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    return bytes;
  }
  std::atomic<int64_t> reads{0};  // the cache reads batches on several threads
};

std::string BytesOf(const BlockCache::Block& block) {
  const int64_t half = kBlockBytes / 2;
  std::string out(kBlockBytes, '\0');
  std::memcpy(out.data(), block.keys.get(), half);
  std::memcpy(out.data() + half, block.values.get(), half);
  return out;
}

absl::StatusOr<std::vector<BlockCache::Block>> Fetch(BlockCache& cache, FakeSource& source,
                                                     std::vector<int64_t> indices) {
  std::vector<BlockCache::BlockId> ids;
  for (int64_t i : indices) ids.push_back({1, i});
  return cache.GetMany(0, "doc", source, 2, ids, kRows, kWidth, kElem);
}

TEST(BlockCacheTest, EveryTierReturnsTheStoredBytesWithinItsBudget) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  BlockCache cache({cpu.get()}, 3 * kBlockBytes, 6 * kBlockBytes);
  FakeSource source;
  std::mt19937 rng(7);
  for (int round = 0; round < 40; ++round) {
    std::vector<int64_t> indices;
    for (int i = 0; i < 3; ++i) indices.push_back(rng() % 10);
    std::sort(indices.begin(), indices.end());
    indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
    auto blocks = Fetch(cache, source, indices);
    ASSERT_TRUE(blocks.ok()) << blocks.status();
    for (size_t i = 0; i < indices.size(); ++i) {
      ASSERT_EQ(BytesOf((*blocks)[i]), FakeSource::Record(2, 1, indices[i])) << "round " << round;
    }
    const BlockCacheStats stats = cache.stats();
    EXPECT_LE(stats.device_bytes, 3 * kBlockBytes);
    EXPECT_LE(stats.host_bytes, 6 * kBlockBytes);
  }
  const BlockCacheStats stats = cache.stats();
  EXPECT_EQ(stats.source_reads, source.reads);
  EXPECT_GT(stats.device_hits, 0);
  EXPECT_GT(stats.host_hits, 0);
  EXPECT_GT(stats.device_evictions, 0);
  EXPECT_EQ(stats.bytes_read, stats.source_reads * kBlockBytes);
}

TEST(BlockCacheTest, ABlockOnTheDeviceAtTheStartOfAFetchIsAHit) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  BlockCache cache({cpu.get()}, 2 * kBlockBytes, 0);  // no host tier
  FakeSource source;
  ASSERT_TRUE(Fetch(cache, source, {0}).ok());
  // Block 0 is resident; the fetch's two new blocks evict it, but only after it was found.
  auto blocks = Fetch(cache, source, {1, 2, 0});
  ASSERT_TRUE(blocks.ok());
  EXPECT_EQ(cache.stats().device_hits, 1);
  EXPECT_EQ(source.reads, 3);
  EXPECT_EQ(BytesOf((*blocks)[2]), FakeSource::Record(2, 1, 0));
}

TEST(BlockCacheTest, HeldBlocksKeepTheirBytesAfterEviction) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  BlockCache cache({cpu.get()}, kBlockBytes, kBlockBytes);
  FakeSource source;
  auto held = Fetch(cache, source, {5});
  ASSERT_TRUE(held.ok());
  for (int64_t i = 0; i < 20; ++i) ASSERT_TRUE(Fetch(cache, source, {i + 10}).ok());
  EXPECT_EQ(BytesOf((*held)[0]), FakeSource::Record(2, 1, 5));  // its slots were not reused
}

TEST(BlockCacheTest, ReservedHostMemoryServesTheHostTier) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  BlockCache cache({cpu.get()}, kBlockBytes, 64 * kBlockBytes);
  ASSERT_TRUE(cache.ReserveHostMemory().ok());
  FakeSource source;
  for (int64_t i = 0; i < 8; ++i) ASSERT_TRUE(Fetch(cache, source, {i}).ok());
  auto again = Fetch(cache, source, {0, 1, 2, 3});  // evicted from the device, in the host tier
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(source.reads, 8);
  EXPECT_EQ(cache.stats().host_hits, 4);
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(BytesOf((*again)[i]), FakeSource::Record(2, 1, i));
}

// The CPU backend dressed as a device with a queue: host memory it allocates is
// "device-readable", and pieces kept_until_synchronized are copied only at Synchronize (as a
// GPU reads them later, in stream order). Nothing but memory is used by the cache.
class QueuedCopyBackend final : public Backend {
 public:
  QueuedCopyBackend() : cpu_(NewCpuBackend(1)) {}
  DeviceKind kind() const override { return cpu_->kind(); }
  DType activation_dtype() const override { return cpu_->activation_dtype(); }
  DType weight_dtype() const override { return cpu_->weight_dtype(); }
  absl::StatusOr<Buffer> Allocate(int64_t bytes) override {
    auto b = cpu_->Allocate(bytes);
    if (!b.ok()) return b.status();
    const int64_t n = b->bytes();
    return Buffer(this, b->release(), n);
  }
  void Free(void* data) override { cpu_->Free(data); }
  absl::StatusOr<HostMemory> AllocateHost(int64_t bytes) override {
    auto memory = cpu_->AllocateHost(bytes);
    if (memory.ok()) memory->device_readable = true;
    return memory;
  }
  void CopyFromHost(const Tensor& dst, const void* host) override { cpu_->CopyFromHost(dst, host); }
  void CopyToHost(const Tensor& src, void* host) override { cpu_->CopyToHost(src, host); }
  void CopyManyFromHost(absl::Span<const HostPiece> pieces) override {
    for (const HostPiece& p : pieces) {
      ASSERT_TRUE(p.device_readable || !p.kept_until_synchronized);
      if (p.kept_until_synchronized) {
        queued.push_back(p);
      } else {
        cpu_->CopyFromHost(p.dst, p.host);
      }
    }
  }
  absl::Status Synchronize() override {
    for (const HostPiece& p : queued) cpu_->CopyFromHost(p.dst, p.host);
    queued.clear();
    return cpu_->Synchronize();
  }
  // Not used by the cache.
  void UploadTensor(const TensorInfo&, const Tensor&) override { ADD_FAILURE(); }
  void Copy(const Tensor&, const Tensor&) override { ADD_FAILURE(); }
  void WriteRows(PagedBuffer&, int64_t, const Tensor&) override { ADD_FAILURE(); }
  void Fill(const Tensor&, float) override { ADD_FAILURE(); }
  void FillRandom(const Tensor&, uint64_t, float, float) override { ADD_FAILURE(); }
  void Embedding(const Tensor&, absl::Span<const int32_t>, float, const Tensor&) override {
    ADD_FAILURE();
  }
  void MatMul(const Tensor&, const Tensor&, const Tensor&) override { ADD_FAILURE(); }
  void RmsNorm(const Tensor&, const Tensor&, int64_t, float) override { ADD_FAILURE(); }
  void Rope(const Tensor&, int64_t, int64_t, int64_t, float) override { ADD_FAILURE(); }
  void SiluMul(const Tensor&, const Tensor&, const Tensor&) override { ADD_FAILURE(); }
  void SigmoidMul(const Tensor&, const Tensor&) override { ADD_FAILURE(); }
  void AddScaled(const Tensor&, const Tensor&, float) override { ADD_FAILURE(); }
  void Lightning(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, const Tensor&,
                 float, const Tensor&, const Tensor&) override {
    ADD_FAILURE();
  }
  void WindowMeans(const PagedBuffer&, int64_t, int64_t, int64_t, const Tensor&) override {
    ADD_FAILURE();
  }
  void SelectBlocks(const Tensor&, int64_t, int64_t, int64_t, absl::Span<const PagedBuffer>,
                    absl::Span<const PagedBuffer>, const kernels::SparseParams&, float,
                    const Tensor&, const Tensor&) override {
    ADD_FAILURE();
  }
  void BlockSparseAttention(const Tensor&, int64_t, int64_t, int64_t, absl::Span<const PagedBuffer>,
                            absl::Span<const PagedBuffer>, int64_t, const Tensor&, int64_t, float,
                            const Tensor&) override {
    ADD_FAILURE();
  }

  std::vector<HostPiece> queued;

 private:
  std::unique_ptr<Backend> cpu_;
};

// With upload_pins the device reads host-tier slots after GetMany returns; the pins keep
// those slots from being refilled by later fetches (other sessions) before it has. Without
// them the upload is finished when GetMany returns.
TEST(BlockCacheTest, UploadPinsKeepHostSlotsUntilTheQueuedUploadsRan) {
  QueuedCopyBackend device;
  BlockCache cache({&device}, 2 * kBlockBytes, 2 * kBlockBytes, /*read_threads=*/0);
  FakeSource source;
  std::vector<BlockCache::BlockId> first = {{1, 0}, {1, 1}};
  std::vector<std::shared_ptr<void>> pins;
  auto blocks = cache.GetMany(0, "doc", source, 2, first, kRows, kWidth, kElem, &pins);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ(pins.size(), 2u);
  EXPECT_EQ(device.queued.size(), 4u);  // keys and values of both blocks, not yet copied
  // Other fetches evict blocks 0 and 1 from the host tier and take slots for theirs while
  // the uploads above still wait in the queue.
  std::vector<std::shared_ptr<void>> other_pins;
  for (int64_t i = 2; i < 12; i += 2) {
    std::vector<BlockCache::BlockId> ids = {{1, i}, {1, i + 1}};
    ASSERT_TRUE(cache.GetMany(0, "doc", source, 2, ids, kRows, kWidth, kElem, &other_pins).ok());
  }
  ASSERT_TRUE(device.Synchronize().ok());
  pins.clear();
  other_pins.clear();
  EXPECT_EQ(BytesOf((*blocks)[0]), FakeSource::Record(2, 1, 0));
  EXPECT_EQ(BytesOf((*blocks)[1]), FakeSource::Record(2, 1, 1));

  std::vector<BlockCache::BlockId> later = {{1, 20}};
  auto now = cache.GetMany(0, "doc", source, 2, later, kRows, kWidth, kElem);
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_TRUE(device.queued.empty());  // no pins given: copied before GetMany returned
  EXPECT_EQ(BytesOf((*now)[0]), FakeSource::Record(2, 1, 20));
}

// A record of a longer prefix of the block (GetState semantics): its first rows of keys and
// of values, with and without a host tier.
TEST(BlockCacheTest, ALongerRecordGivesItsFirstRows) {
  class LongSource : public StateSource {
   public:
    absl::StatusOr<std::string> Get(const StateRecordKey&) override {
      std::string bytes(2 * kBlockBytes, '\0');
      for (size_t b = 0; b < bytes.size(); ++b) bytes[b] = static_cast<char>(b % 251);
      return bytes;
    }
  };
  const int64_t half = kBlockBytes / 2;  // kRows rows; the record holds 2 * kRows
  std::string want(kBlockBytes, '\0');
  for (int64_t b = 0; b < half; ++b) {
    want[b] = static_cast<char>(b % 251);                      // first keys
    want[half + b] = static_cast<char>((2 * half + b) % 251);  // first values
  }
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  for (int64_t host_budget : {int64_t{0}, 4 * kBlockBytes}) {
    BlockCache cache({cpu.get()}, 4 * kBlockBytes, host_budget);
    LongSource source;
    std::vector<BlockCache::BlockId> ids = {{0, 3}};
    auto blocks = cache.GetMany(0, "doc", source, 1, ids, kRows, kWidth, kElem);
    ASSERT_TRUE(blocks.ok()) << blocks.status();
    EXPECT_EQ(BytesOf((*blocks)[0]), want) << "host budget " << host_budget;
  }
}

// A fetch of many misses reads its store batches on the helper threads: every block's bytes
// arrive, each read once, with or without a host tier; a failing batch fails the fetch.
TEST(BlockCacheTest, ParallelStoreBatchesGiveEveryBlock) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  for (int64_t host_budget : {int64_t{0}, 1000 * kBlockBytes}) {
    for (int threads : {0, 3}) {
      SCOPED_TRACE(::testing::Message() << "host " << host_budget << " threads " << threads);
      BlockCache cache({cpu.get()}, 1000 * kBlockBytes, host_budget, threads);
      FakeSource source;
      std::vector<int64_t> indices(300);
      for (int64_t i = 0; i < 300; ++i) indices[i] = 3 * i + 1;  // 19 batches of reads
      auto blocks = Fetch(cache, source, indices);
      ASSERT_TRUE(blocks.ok()) << blocks.status();
      for (size_t i = 0; i < indices.size(); ++i) {
        ASSERT_EQ(BytesOf((*blocks)[i]), FakeSource::Record(2, 1, indices[i])) << i;
      }
      EXPECT_EQ(source.reads, 300);
      EXPECT_EQ(cache.stats().source_reads, 300);
      for (int64_t i = 0; i < 300; ++i) indices[i] = 3 * i + 2;  // all misses again
      indices[250] = -1;  // a record the store does not have, in a late batch
      EXPECT_EQ(Fetch(cache, source, indices).status().code(), absl::StatusCode::kNotFound);
    }
  }
}

// A store that shows its records in place (StateSource::ReadMany, no GetMany) fills the
// blocks with and without a host tier, in whatever order it visits them; one that visits
// fewer records than asked for, or one twice, fails the fetch instead of leaving a slot
// unwritten.
TEST(BlockCacheTest, AStoreReadInPlaceFillsEveryBlockAndMustVisitEachRecord) {
  class InPlaceSource : public StateSource {
   public:
    enum class Fault { kNone, kReversed, kSkipLast, kTwice };
    explicit InPlaceSource(Fault fault) : fault_(fault) {}
    absl::StatusOr<std::string> Get(const StateRecordKey&) override {
      return absl::InternalError("read through ReadMany only");
    }
    absl::Status ReadMany(absl::Span<const StateRecordKey> keys, RecordVisitor visit) override {
      std::vector<std::string> records;
      for (const StateRecordKey& key : keys) {
        records.push_back(FakeSource::Record(key.layer, key.head, key.index));
      }
      const size_t n = keys.size() - (fault_ == Fault::kSkipLast ? 1 : 0);
      for (size_t j = 0; j < n; ++j) {
        const size_t i = fault_ == Fault::kReversed ? keys.size() - 1 - j : j;
        TOME_RETURN_IF_ERROR(visit(i, records[i]));
      }
      if (fault_ == Fault::kTwice) return visit(0, records[0]);
      return absl::OkStatus();
    }

   private:
    const Fault fault_;
  };
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  for (int64_t host_budget : {int64_t{0}, 100 * kBlockBytes}) {
    SCOPED_TRACE(::testing::Message() << "host " << host_budget);
    BlockCache cache({cpu.get()}, 100 * kBlockBytes, host_budget);
    for (auto order : {InPlaceSource::Fault::kNone, InPlaceSource::Fault::kReversed}) {
      InPlaceSource source(order);
      std::vector<BlockCache::BlockId> ids;
      for (int64_t i = 0; i < 40; ++i)
        ids.push_back({1, 2 * i + (order == InPlaceSource::Fault::kNone ? 0 : 1)});
      auto blocks = cache.GetMany(0, "doc", source, 2, ids, kRows, kWidth, kElem);
      ASSERT_TRUE(blocks.ok()) << blocks.status();
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_EQ(BytesOf((*blocks)[i]), FakeSource::Record(2, 1, ids[i].index)) << i;
      }
    }
    for (auto fault : {InPlaceSource::Fault::kSkipLast, InPlaceSource::Fault::kTwice}) {
      InPlaceSource bad(fault);
      std::vector<BlockCache::BlockId> more = {{1, 101}, {1, 103}, {1, 105}};
      EXPECT_EQ(cache.GetMany(0, "doc2", bad, 2, more, kRows, kWidth, kElem).status().code(),
                absl::StatusCode::kInternal);
    }
  }
}

TEST(BlockCacheTest, StoreErrorsAndBadRecordsReachTheCaller) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  BlockCache cache({cpu.get()}, 4 * kBlockBytes, 4 * kBlockBytes);
  FakeSource source;
  EXPECT_EQ(Fetch(cache, source, {-1}).status().code(), absl::StatusCode::kNotFound);
  std::vector<BlockCache::BlockId> ids = {{1, 0}};
  // The record is one block of 4 rows: asking for 8 rows finds it too short.
  EXPECT_EQ(cache.GetMany(0, "doc", source, 2, ids, 2 * kRows, kWidth, kElem).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(cache.GetMany(3, "doc", source, 2, ids, kRows, kWidth, kElem).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tome::engine
