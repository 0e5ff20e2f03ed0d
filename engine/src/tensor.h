// Backend memory and the 2-D strided views the model code passes to backend ops.
#pragma once

#include <cstdint>
#include <utility>

namespace tome::engine {

class Backend;

enum class DType : uint8_t { kF32, kBF16, kI32 };

inline int64_t DTypeSize(DType t) { return t == DType::kBF16 ? 2 : 4; }

// A non-owning view of backend memory: `rows` rows of `cols` elements, `stride` elements
// between row starts. Column and row slices share the memory.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;

  Tensor Cols(int64_t first, int64_t n) const {
    return Tensor{static_cast<char*>(data) + first * DTypeSize(dtype), dtype, rows, n, stride};
  }
  Tensor Rows(int64_t first, int64_t n) const {
    return Tensor{static_cast<char*>(data) + first * stride * DTypeSize(dtype), dtype, n, cols,
                  stride};
  }
  bool contiguous() const { return stride == cols; }
  int64_t num_elements() const { return rows * cols; }
  float* f32() const { return static_cast<float*>(data); }
  int32_t* i32() const { return static_cast<int32_t*>(data); }
};

// A host copy of Backend::CopyManyFromHost: dst's rows, packed, in dst's dtype, at `host`.
struct HostPiece {
  Tensor dst;
  const void* host = nullptr;
  // `host` lies in memory from Backend::AllocateHost that says it is device_readable: the
  // backend may read it in place instead of staging a copy.
  bool device_readable = false;
  // The caller keeps `host` unchanged until the backend's queue has passed this copy (its
  // next Synchronize or CopyToHost returns), so a device-readable piece is read in stream
  // order without CopyManyFromHost waiting for it.
  bool kept_until_synchronized = false;
};

// Memory allocated by a backend; freed through it. Move-only.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend* backend, void* data, int64_t bytes) : backend_(backend), data_(data), bytes_(bytes) {}
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  void* data() const { return data_; }
  // Gives up ownership without freeing (a wrapping backend re-homes the memory).
  void* release() {
    backend_ = nullptr;
    bytes_ = 0;
    return std::exchange(data_, nullptr);
  }
  int64_t bytes() const { return bytes_; }
  // A dense [rows, cols] view of the start of the buffer.
  Tensor View(DType dtype, int64_t rows, int64_t cols) const {
    return Tensor{data_, dtype, rows, cols, cols};
  }

 private:
  Backend* backend_ = nullptr;
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace tome::engine
