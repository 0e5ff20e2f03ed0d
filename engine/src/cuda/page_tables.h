// Device copies of PagedBuffer page-pointer arrays, for the kernels' paged views. One table
// per PagedBuffer (keyed by its address). A use whose buffer still has the page stamp of the
// last upload (PageStamp: unchanged pointers, as on most decode steps) costs a lookup;
// otherwise the buffer's pointers are compared with the last uploaded ones and only the
// entries from the first difference on are uploaded (decode appends one page every
// block_size tokens), or, when few entries past it differ (a storage-backed view whose
// selected blocks changed), just those, scattered by a kernel that reads them from pinned
// host memory (no copy call: a storage-backed decode step changes four views in each
// sparse layer). Stamps are never reused, so a reused address (a new buffer where a freed
// one lived) is safe.
#pragma once

#include <cuda_runtime.h>

#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "paged_buffer.h"
#include "tome/kernels/cuda/copy_pieces.h"
#include "tome/kernels/cuda/types.h"

namespace tome::engine {

class PageTableCache {
 public:
  // `drain_before_upload`: wait for the stream to be idle before each upload or table
  // allocation (tensor-parallel ranks: a pageable copy or a new mapping must not wait for
  // an NCCL kernel in flight; cuda_backend.cc, Drain). `ring_half_entries`: see ring_host_.
  static constexpr size_t kDefaultRingHalfEntries = 16384;
  explicit PageTableCache(cudaStream_t stream, bool drain_before_upload = false,
                          size_t ring_half_entries = kDefaultRingHalfEntries)
      : stream_(stream), drain_(drain_before_upload), ring_half_entries_(ring_half_entries) {}
  ~PageTableCache();
  PageTableCache(const PageTableCache&) = delete;
  PageTableCache& operator=(const PageTableCache&) = delete;

  // A device view of `buffer` whose page table is current in stream order.
  absl::StatusOr<kernels::cuda::DevicePagedRows> View(const PagedBuffer& buffer);

 private:
  struct Table {
    void* device = nullptr;  // capacity page pointers
    size_t capacity = 0;
    std::vector<const void*> uploaded;
    uint64_t stamp = 0;       // the buffer's page stamp when `uploaded` was (0: none yet)
    void* entries = nullptr;  // kernels::cuda::TableEntry[entries_capacity], changed entries
    size_t entries_capacity = 0;
  };
  // Writes host_entries_ (the changed entries) into t's table; false if t's entry buffer
  // could not grow (the caller uploads densely instead).
  absl::StatusOr<bool> UploadChanged(Table& t);
  // Device address of a copy of host_entries_ in the pinned ring, or null where it does not
  // fit or pinned memory cannot be had.
  const kernels::cuda::TableEntry* EntriesInRing();
  std::vector<kernels::cuda::TableEntry> host_entries_;
  void Clear();

  cudaStream_t stream_;
  bool drain_;
  std::unordered_map<const PagedBuffer*, Table> tables_;
  // Pinned, mapped memory the scatter kernel reads entries from, in two halves of
  // ring_half_entries_: a half is refilled only after the device has passed the event
  // recorded when it was left.
  const size_t ring_half_entries_;
  kernels::cuda::TableEntry* ring_host_ = nullptr;
  kernels::cuda::TableEntry* ring_device_ = nullptr;
  bool ring_failed_ = false;
  int ring_half_ = 0;
  size_t ring_used_ = 0;  // entries of the current half
  cudaEvent_t ring_left_[2] = {nullptr, nullptr};
};

}  // namespace tome::engine
