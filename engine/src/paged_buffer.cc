#include "paged_buffer.h"

#include "absl/strings/str_cat.h"
#include "backend.h"
#include "tome/base/status_macros.h"

namespace tome::engine {

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
  return absl::OkStatus();
}

absl::Status PagedBuffer::Append(const Tensor& rows) {
  if (rows.cols != width_ || rows.dtype != dtype_) {
    return absl::InternalError(absl::StrCat("PagedBuffer::Append: rows of ", rows.cols,
                                            " elements, expected ", width_));
  }
  int64_t done = 0;
  while (done < rows.rows) {
    const int64_t in_page = num_rows_ % rows_per_page_;
    if (in_page == 0) {
      TOME_ASSIGN_OR_RETURN(std::shared_ptr<Buffer> page, NewPage());
      page_ptrs_.push_back(page->data());
      pages_.push_back(std::move(page));
    } else {
      TOME_RETURN_IF_ERROR(EnsureWritableLastPage());
    }
    const int64_t n = std::min(rows_per_page_ - in_page, rows.rows - done);
    char* dst = static_cast<char*>(pages_.back()->data()) + in_page * width_ * DTypeSize(dtype_);
    backend_->Copy(Tensor{dst, dtype_, n, width_, width_}, rows.Rows(done, n));
    num_rows_ += n;
    done += n;
  }
  return absl::OkStatus();
}

absl::Status PagedBuffer::AppendPageFromHost(const void* host, int64_t rows) {
  if (num_rows_ % rows_per_page_ != 0 || rows > rows_per_page_ || rows <= 0) {
    return absl::InternalError("PagedBuffer::AppendPageFromHost: not on a page boundary");
  }
  TOME_ASSIGN_OR_RETURN(std::shared_ptr<Buffer> page, NewPage());
  backend_->CopyFromHost(Tensor{page->data(), dtype_, rows, width_, width_}, host);
  page_ptrs_.push_back(page->data());
  pages_.push_back(std::move(page));
  num_rows_ += rows;
  return absl::OkStatus();
}

void PagedBuffer::AppendAbsentPage() {
  pages_.push_back(nullptr);
  page_ptrs_.push_back(nullptr);
  num_rows_ += rows_per_page_;
}

void PagedBuffer::SetPage(int64_t index, std::shared_ptr<Buffer> page) {
  page_ptrs_[index] = page->data();
  pages_[index] = std::move(page);
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
