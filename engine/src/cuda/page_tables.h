// Device copies of PagedBuffer page-pointer arrays, for the kernels' paged views. One table
// per PagedBuffer (keyed by its address). A use whose buffer still has the page stamp of the
// last upload (PageStamp: unchanged pointers, as on most decode steps) costs a lookup;
// otherwise the buffer's pointers are compared with the last uploaded ones and only the
// entries from the first difference on are uploaded (decode appends one page every
// block_size tokens), or, when few entries past it differ (a storage-backed view whose
// selected blocks changed), just those, scattered by a kernel. Stamps are never reused, so a
// reused address (a new buffer where a freed one lived) is safe.
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
  // an NCCL kernel in flight; cuda_backend.cc, Drain).
  explicit PageTableCache(cudaStream_t stream, bool drain_before_upload = false)
      : stream_(stream), drain_(drain_before_upload) {}
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
  std::vector<kernels::cuda::TableEntry> host_entries_;
  void Clear();

  cudaStream_t stream_;
  bool drain_;
  std::unordered_map<const PagedBuffer*, Table> tables_;
};

}  // namespace tome::engine
