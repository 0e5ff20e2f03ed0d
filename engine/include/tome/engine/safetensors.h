// Memory-mapped safetensors checkpoints: one model.safetensors, or shards listed by
// model.safetensors.index.json. Tensors are read in place from the mapping; nothing is
// copied until a caller converts a tensor into its own buffer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tome::engine {

enum class TensorDType { kF32, kBF16, kF16 };

const char* TensorDTypeName(TensorDType dtype);
int64_t TensorDTypeSize(TensorDType dtype);

// One tensor inside a mapped file.
struct TensorInfo {
  std::string name;
  TensorDType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping
  int64_t num_bytes = 0;
  int shard = 0;                  // index into the checkpoint's files

  int64_t num_elements() const;
};

// A read-only view of all tensors of a checkpoint directory. Thread-compatible.
class SafetensorsCheckpoint {
 public:
  // Opens `dir`/model.safetensors.index.json if present, else `dir`/model.safetensors, and
  // validates every header (dtype, shape, offsets inside the file, no overlap past the end).
  // NotFound if neither file exists, DataLoss / InvalidArgument for malformed files.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& dir);
  // Opens a single safetensors file.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenFile(const std::string& path);

  ~SafetensorsCheckpoint();
  SafetensorsCheckpoint(const SafetensorsCheckpoint&) = delete;
  SafetensorsCheckpoint& operator=(const SafetensorsCheckpoint&) = delete;

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  // NotFound naming the tensor if absent.
  absl::StatusOr<const TensorInfo*> Find(const std::string& name) const;

  // Converts a tensor to fp32 into `out` (num_elements floats).
  static void ToFloat32(const TensorInfo& tensor, float* out);

  // Tells the kernel the mapped pages of a tensor are no longer needed, so a converted copy
  // is the only one resident (the "one copy of the weights" rule).
  void Release(const TensorInfo& tensor) const;

 private:
  struct Mapping {
    std::string path;
    void* base = nullptr;
    size_t size = 0;
  };
  SafetensorsCheckpoint() = default;
  absl::Status AddFile(const std::string& path, int shard,
                       const std::vector<std::string>* expected_names);

  std::vector<Mapping> files_;
  std::map<std::string, TensorInfo> tensors_;
};

// Writes tensors (fp32 data, stored as `dtype`) into one safetensors file.
struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};
absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorToWrite> tensors,
                              TensorDType dtype);

// Writes tensors as `num_shards` files model-0000i-of-0000n.safetensors plus
// model.safetensors.index.json (num_shards = 1 writes a single model.safetensors).
absl::Status WriteSafetensorsCheckpoint(const std::string& dir,
                                        absl::Span<const TensorToWrite> tensors,
                                        TensorDType dtype, int num_shards);

float BFloat16ToFloat(uint16_t bits);
uint16_t FloatToBFloat16(float value);  // round to nearest even
float HalfToFloat(uint16_t bits);
uint16_t FloatToHalf(float value);

}  // namespace tome::engine
