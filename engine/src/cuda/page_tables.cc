#include "cuda/page_tables.h"

#include <algorithm>

#include "cuda/cuda_status.h"
#include "tome/base/status_macros.h"

namespace tome::engine {
namespace {

// Tables kept before all are dropped (each is small; this bounds a long-running server that
// creates and frees many sequences).
constexpr size_t kMaxTables = 4096;

}  // namespace

PageTableCache::~PageTableCache() {
  Clear();
  if (ring_host_ != nullptr) {
    cudaStreamSynchronize(stream_);  // the last scatters may still read the ring
    cudaFreeHost(ring_host_);
  }
  for (cudaEvent_t e : ring_left_) {
    if (e != nullptr) cudaEventDestroy(e);
  }
}

const kernels::cuda::TableEntry* PageTableCache::EntriesInRing() {
  const size_t n = host_entries_.size();
  if (ring_failed_ || n > ring_half_entries_) return nullptr;
  if (ring_host_ == nullptr) {
    if (drain_ && cudaStreamSynchronize(stream_) != cudaSuccess) return nullptr;
    void* host = nullptr;
    void* device = nullptr;
    if (cudaHostAlloc(&host, 2 * ring_half_entries_ * sizeof(kernels::cuda::TableEntry),
                      cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess ||
        cudaHostGetDevicePointer(&device, host, 0) != cudaSuccess ||
        cudaEventCreateWithFlags(&ring_left_[0], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&ring_left_[1], cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();  // not an error of the stream: the copy path follows
      if (host != nullptr) cudaFreeHost(host);
      ring_failed_ = true;
      return nullptr;
    }
    ring_host_ = static_cast<kernels::cuda::TableEntry*>(host);
    ring_device_ = static_cast<kernels::cuda::TableEntry*>(device);
  }
  if (ring_used_ + n > ring_half_entries_) {  // on to the other half, once the device left it
    if (cudaEventRecord(ring_left_[ring_half_], stream_) != cudaSuccess) return nullptr;
    ring_half_ ^= 1;
    ring_used_ = 0;
    if (cudaEventSynchronize(ring_left_[ring_half_]) != cudaSuccess) return nullptr;
  }
  const size_t first = ring_half_ * ring_half_entries_ + ring_used_;
  std::copy(host_entries_.begin(), host_entries_.end(), ring_host_ + first);
  ring_used_ += n;
  return ring_device_ + first;
}

void PageTableCache::Clear() {
  for (auto& [key, table] : tables_) {
    cudaFreeAsync(table.device, stream_);
    if (table.entries) cudaFreeAsync(table.entries, stream_);
  }
  tables_.clear();
}

absl::StatusOr<bool> PageTableCache::UploadChanged(Table& t) {
  if (const kernels::cuda::TableEntry* entries = EntriesInRing()) {
    TOME_RETURN_IF_ERROR(CudaStatus(
        kernels::cuda::SetTableEntries(static_cast<const void**>(t.device), entries,
                                       static_cast<int64_t>(host_entries_.size()), stream_),
        "page table entries"));
    return true;
  }
  const size_t changed = host_entries_.size();
  if (changed > t.entries_capacity) {
    const size_t capacity = std::max<size_t>(changed, 2 * t.entries_capacity);
    void* entries = nullptr;
    if (cudaMallocAsync(&entries, capacity * sizeof(kernels::cuda::TableEntry), stream_) !=
        cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    if (t.entries) cudaFreeAsync(t.entries, stream_);
    t.entries = entries;
    t.entries_capacity = capacity;
  }
  // From pageable memory: staged before the call returns (host_entries_ is reused).
  TOME_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpyAsync(t.entries, host_entries_.data(),
                                 host_entries_.size() * sizeof(kernels::cuda::TableEntry),
                                 cudaMemcpyHostToDevice, stream_),
                 "page table entries upload"));
  TOME_RETURN_IF_ERROR(CudaStatus(
      kernels::cuda::SetTableEntries(static_cast<const void**>(t.device),
                                     static_cast<const kernels::cuda::TableEntry*>(t.entries),
                                     static_cast<int64_t>(host_entries_.size()), stream_),
      "page table entries"));
  return true;
}

absl::StatusOr<kernels::cuda::DevicePagedRows> PageTableCache::View(const PagedBuffer& buffer) {
  if (tables_.size() >= kMaxTables && !tables_.count(&buffer)) Clear();
  Table& t = tables_[&buffer];
  auto view = [&] {  // t.device as it is when returned (an upload may reallocate it)
    return kernels::cuda::DevicePagedRows{static_cast<const kernels::cuda::bf16* const*>(t.device),
                                          buffer.rows_per_page(), buffer.width(),
                                          buffer.num_rows()};
  };
  if (t.stamp == buffer.page_stamp()) return view();  // the pointers of the last upload
  const std::vector<const void*>& pages = buffer.page_pointers();
  if (t.stamp != 0 && buffer.view_delta_base() == t.stamp && t.uploaded.size() == pages.size()) {
    // A view changed only at its delta since this table's upload: those entries, scattered.
    host_entries_.clear();
    for (const int64_t i : buffer.view_delta()) {
      if (t.uploaded[i] == pages[i]) continue;
      t.uploaded[i] = pages[i];
      host_entries_.push_back({i, pages[i]});
    }
    if (drain_ && !host_entries_.empty()) {
      TOME_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream_), "page table (drain)"));
    }
    absl::StatusOr<bool> uploaded = true;
    if (!host_entries_.empty()) uploaded = UploadChanged(t);
    if (!uploaded.ok()) {
      t.stamp = 0;  // t.uploaded is ahead of the device table now
      return uploaded.status();
    }
    if (*uploaded) {
      t.stamp = buffer.page_stamp();
      return view();
    }
    t.uploaded.clear();  // the entry buffer could not grow: a dense upload below
  }
  size_t first = 0;
  while (first < pages.size() && first < t.uploaded.size() && t.uploaded[first] == pages[first]) {
    ++first;
  }
  if (drain_ && (pages.size() > t.capacity || first < pages.size())) {
    TOME_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream_), "page table (drain)"));
  }
  if (pages.size() > t.capacity) {
    const size_t capacity = std::max<size_t>({pages.size(), 2 * t.capacity, 64});
    void* device = nullptr;
    if (const cudaError_t e = cudaMallocAsync(&device, capacity * sizeof(void*), stream_);
        e != cudaSuccess) {
      cudaGetLastError();
      return CudaStatus(e, "page table");
    }
    if (t.device) cudaFreeAsync(t.device, stream_);
    t.device = device;
    t.capacity = capacity;
    t.uploaded.clear();
    first = 0;
  }
  if (first < pages.size()) {
    host_entries_.clear();
    for (size_t i = first; i < pages.size(); ++i) {
      if (i >= t.uploaded.size() || t.uploaded[i] != pages[i]) {
        host_entries_.push_back({static_cast<int64_t>(i), pages[i]});
      }
    }
    // 16 bytes an entry and a kernel against 8 bytes for every entry from `first` on.
    if (4 * host_entries_.size() < pages.size() - first) {
      TOME_ASSIGN_OR_RETURN(const bool uploaded, UploadChanged(t));
      if (uploaded) {
        t.uploaded = pages;
        first = pages.size();
      }
    }
  }
  if (first < pages.size()) {
    // From pageable memory: the source is staged before the call returns, so `pages` may
    // change afterwards; the copy itself runs in stream order.
    TOME_RETURN_IF_ERROR(CudaStatus(
        cudaMemcpyAsync(static_cast<const void**>(t.device) + first, pages.data() + first,
                        (pages.size() - first) * sizeof(void*), cudaMemcpyHostToDevice, stream_),
        "page table upload"));
    t.uploaded = pages;
  }
  t.stamp = buffer.page_stamp();
  return view();
}

}  // namespace tome::engine
