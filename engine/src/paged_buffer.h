// A growing matrix stored in fixed-size pages of backend memory (sparse-layer keys, values
// and block summaries). Full pages are immutable and shared between forks of a sequence
// through reference counts; appending to a shared partial page copies it first
// (copy-on-write), so a fork never sees another's rows.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "tensor.h"

namespace tome::engine {

class PagedBuffer;

// Names one state of a PagedBuffer's page-pointer array: a fresh value from a process-wide
// counter whenever the pointers change, so two equal stamps mean equal pointer arrays (a
// device page-table cache may then skip comparing them: 16K pointers per buffer at a million
// tokens, on every decode step). A copy shares its source's stamp (same pointers); the
// source of a move gets a fresh one (its pointers are gone).
class PageStamp {
 public:
  PageStamp() : value_(Next()) {}
  PageStamp(const PageStamp&) = default;
  PageStamp& operator=(const PageStamp&) = default;
  PageStamp(PageStamp&& other) noexcept : value_(other.value_) { other.Renew(); }
  PageStamp& operator=(PageStamp&& other) noexcept {
    value_ = other.value_;
    other.Renew();
    return *this;
  }
  void Renew() { value_ = Next(); }
  uint64_t value() const { return value_; }

 private:
  static uint64_t Next();
  uint64_t value_;
};

// Backend::WriteRows as one Copy per page touched (the CPU backend's, and any backend's
// fallback).
void WriteRowsPageByPage(Backend& backend, PagedBuffer& dst, int64_t first_row,
                         const Tensor& rows);

class PagedBuffer {
 public:
  PagedBuffer() = default;
  PagedBuffer(Backend* backend, DType dtype, int64_t rows_per_page, int64_t width)
      : backend_(backend), dtype_(dtype), rows_per_page_(rows_per_page), width_(width) {}

  // Appends the rows of `rows` (cols == width). ResourceExhausted if memory runs out.
  absl::Status Append(const Tensor& rows);
  // A copy sharing every page (cheap).
  PagedBuffer Fork() const { return *this; }

  // Appends a page holding `rows` (<= rows_per_page) rows read from dense host bytes. The
  // buffer must end on a page boundary. Used when loading stored state. With `pending` the
  // copy is queued there for one Backend::CopyManyFromHost of the caller's, before which
  // `host` must stay valid and the page is not to be read (`device_readable`: see HostPiece).
  absl::Status AppendPageFromHost(const void* host, int64_t rows,
                                  std::vector<HostPiece>* pending = nullptr,
                                  bool device_readable = false);
  // Appends a full page that is not resident (storage-backed attention fetches it when a
  // query selects it). The buffer must end on a page boundary.
  void AppendAbsentPage();
  bool page_resident(int64_t index) const { return page_ptrs_[index] != nullptr; }
  // Makes this buffer a read-only view of `source` for one sparse layer's attention of
  // storage-backed sequences: its page pointers, no references taken (copying 16K pointers
  // at a million tokens, where a Fork would count 16K references up and down). `source`
  // keeps its pages alive; pages added with SetViewPage are kept by the caller until the
  // kernels reading them are enqueued (a backend frees in stream order after them).
  void AssignView(const PagedBuffer& source);
  // AssignView, cheaply when this buffer is a view of `source` whose pages have not changed
  // since (a decode step's next layer call): only the pages set since are put back, and
  // they are recorded as the view's delta (below).
  void ResetView(const PagedBuffer& source);
  // Page `index` of this view reads the page at `page` (backend memory of page_bytes()).
  void SetViewPage(int64_t index, const void* page);
  // The pages whose pointers changed since this view had stamp view_delta_base() (0: not
  // known), so a device page table uploaded at that stamp needs only these entries.
  uint64_t view_delta_base() const { return view_delta_base_; }
  const std::vector<int64_t>& view_delta() const { return view_delta_; }
  // Makes page `index` absent (its memory goes once no fork holds it).
  void DropPage(int64_t index);

  int64_t num_rows() const { return num_rows_; }
  int64_t num_pages() const { return static_cast<int64_t>(page_ptrs_.size()); }
  int64_t rows_per_page() const { return rows_per_page_; }
  int64_t width() const { return width_; }
  DType dtype() const { return dtype_; }
  int64_t page_bytes() const { return rows_per_page_ * width_ * DTypeSize(dtype_); }
  // Rows present in page `index`.
  int64_t rows_in_page(int64_t index) const;
  const void* page(int64_t index) const { return page_ptrs_[index]; }
  // Writable page `index` (Backend::WriteRows): only for pages this buffer alone holds.
  void* mutable_page(int64_t index) { return pages_[index]->data(); }
  // Pointer array of all pages, for building kernel views.
  const std::vector<const void*>& page_pointers() const { return page_ptrs_; }
  // Changes whenever page_pointers() does (see PageStamp).
  uint64_t page_stamp() const { return stamp_.value(); }
  bool page_shared(int64_t index) const { return pages_[index].use_count() > 1; }
  // Bytes of backend memory held by pages that only this buffer references.
  int64_t OwnedBytes() const;

 private:
  absl::Status EnsureWritableLastPage();
  absl::StatusOr<std::shared_ptr<Buffer>> NewPage();

  Backend* backend_ = nullptr;
  DType dtype_ = DType::kF32;
  int64_t rows_per_page_ = 0;
  int64_t width_ = 0;
  int64_t num_rows_ = 0;
  std::vector<std::shared_ptr<Buffer>> pages_;
  std::vector<const void*> page_ptrs_;
  PageStamp stamp_;  // renewed by every change of page_ptrs_
  // A view's source stamp when assigned, the pages set since, and the delta (see above).
  uint64_t view_source_stamp_ = 0;
  std::vector<int64_t> view_set_;
  uint64_t view_delta_base_ = 0;
  std::vector<int64_t> view_delta_;
};

}  // namespace tome::engine
