#include "paged_buffer.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "backend.h"
#include "tome/base/status_macros.h"

namespace tome::engine {

uint64_t PageStamp::Next() {
  static std::atomic<uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

absl::StatusOr<std::shared_ptr<Buffer>> PagedBuffer::NewPage() {
  TOME_ASSIGN_OR_RETURN(Buffer buffer, backend_->Allocate(page_bytes()));
  return std::make_shared<Buffer>(std::move(buffer));
}

absl::Status PagedBuffer::EnsureWritableLastPage() {
  if (pages_.back().use_count() == 1) return absl::OkStatus();
  // Shared partial page: copy it so the other owners keep their rows untouched.
  TOME_ASSIGN_OR_RETURN(std::shared_ptr<Buffer> copy, NewPage());
  const int64_t rows = rows_in_page(num_pages() - 1);
  backend_->Copy(Tensor{copy->data(), dtype_, rows, width_, width_},
                 Tensor{pages_.back()->data(), dtype_, rows, width_, width_});
  pages_.back() = std::move(copy);
  page_ptrs_.back() = pages_.back()->data();
  stamp_.Renew();
  return absl::OkStatus();
}

void WriteRowsPageByPage(Backend& backend, PagedBuffer& dst, int64_t first_row,
                         const Tensor& rows) {
  const int64_t per_page = dst.rows_per_page(), width = dst.width();
  for (int64_t done = 0; done < rows.rows;) {
    const int64_t row = first_row + done, in_page = row % per_page;
    const int64_t n = std::min(per_page - in_page, rows.rows - done);
    char* page = static_cast<char*>(dst.mutable_page(row / per_page));
    backend.Copy(Tensor{page + in_page * width * DTypeSize(dst.dtype()), dst.dtype(), n, width,
                        width},
                 rows.Rows(done, n));
    done += n;
  }
}

absl::Status PagedBuffer::Append(const Tensor& rows) {
  if (rows.cols != width_ || rows.dtype != dtype_) {
    return absl::InternalError(absl::StrCat("PagedBuffer::Append: rows of ", rows.cols,
                                            " elements, expected ", width_));
  }
  if (rows.rows == 0) return absl::OkStatus();
  if (num_rows_ % rows_per_page_ != 0) TOME_RETURN_IF_ERROR(EnsureWritableLastPage());
  // Every new page first (on failure the buffer is unchanged), then one write for all rows.
  const int64_t end = num_rows_ + rows.rows;
  std::vector<std::shared_ptr<Buffer>> added;
  for (int64_t p = num_pages(); p * rows_per_page_ < end; ++p) {
    TOME_ASSIGN_OR_RETURN(std::shared_ptr<Buffer> page, NewPage());
    added.push_back(std::move(page));
  }
  for (std::shared_ptr<Buffer>& page : added) {
    page_ptrs_.push_back(page->data());
    pages_.push_back(std::move(page));
  }
  if (!added.empty()) stamp_.Renew();
  const int64_t first = num_rows_;
  num_rows_ = end;
  backend_->WriteRows(*this, first, rows);
  return absl::OkStatus();
}

absl::Status PagedBuffer::AppendPageFromHost(const void* host, int64_t rows,
                                             std::vector<HostPiece>* pending,
                                             bool device_readable) {
  if (num_rows_ % rows_per_page_ != 0 || rows > rows_per_page_ || rows <= 0) {
    return absl::InternalError("PagedBuffer::AppendPageFromHost: not on a page boundary");
  }
  TOME_ASSIGN_OR_RETURN(std::shared_ptr<Buffer> page, NewPage());
  const Tensor dst{page->data(), dtype_, rows, width_, width_};
  if (pending != nullptr) {
    pending->push_back({dst, host, device_readable});
  } else {
    backend_->CopyFromHost(dst, host);
  }
  page_ptrs_.push_back(page->data());
  pages_.push_back(std::move(page));
  stamp_.Renew();
  num_rows_ += rows;
  return absl::OkStatus();
}

void PagedBuffer::AppendAbsentPage() {
  pages_.push_back(nullptr);
  page_ptrs_.push_back(nullptr);
  stamp_.Renew();
  num_rows_ += rows_per_page_;
}

void PagedBuffer::AssignView(const PagedBuffer& source) {
  backend_ = source.backend_;
  dtype_ = source.dtype_;
  rows_per_page_ = source.rows_per_page_;
  width_ = source.width_;
  num_rows_ = source.num_rows_;
  pages_.clear();
  page_ptrs_ = source.page_ptrs_;  // reuses this view's capacity
  stamp_ = source.stamp_;          // the same pointers
  view_source_stamp_ = source.page_stamp();
  view_set_.clear();
  view_delta_base_ = 0;
  view_delta_.clear();
}

void PagedBuffer::ResetView(const PagedBuffer& source) {
  if (view_source_stamp_ == 0 || view_source_stamp_ != source.page_stamp() || !pages_.empty() ||
      page_ptrs_.size() != source.page_ptrs_.size()) {
    AssignView(source);
    return;
  }
  num_rows_ = source.num_rows_;  // rows appended within the last page keep the stamp
  view_delta_base_ = stamp_.value();
  view_delta_.clear();
  for (const int64_t index : view_set_) {
    page_ptrs_[index] = source.page_ptrs_[index];
    view_delta_.push_back(index);
  }
  view_set_.clear();
  if (!view_delta_.empty()) stamp_.Renew();
}

void PagedBuffer::SetViewPage(int64_t index, const void* page) {
  if (page_ptrs_[index] == page) return;
  page_ptrs_[index] = page;
  view_set_.push_back(index);
  view_delta_.push_back(index);
  stamp_.Renew();
}

void PagedBuffer::DropPage(int64_t index) {
  pages_[index].reset();
  page_ptrs_[index] = nullptr;
  stamp_.Renew();
}

int64_t PagedBuffer::rows_in_page(int64_t index) const {
  return std::min(rows_per_page_, num_rows_ - index * rows_per_page_);
}

int64_t PagedBuffer::OwnedBytes() const {
  int64_t bytes = 0;
  for (const auto& page : pages_) {
    if (page && page.use_count() == 1) bytes += page->bytes();
  }
  return bytes;
}

}  // namespace tome::engine
