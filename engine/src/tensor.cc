#include "tensor.h"

#include "backend.h"

namespace tome::engine {

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (data_) backend_->Free(data_);
    backend_ = std::exchange(o.backend_, nullptr);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

Buffer::~Buffer() {
  if (data_) backend_->Free(data_);
}

}  // namespace tome::engine
