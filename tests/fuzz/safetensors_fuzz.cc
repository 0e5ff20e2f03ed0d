// The safetensors parser (SafetensorsCheckpoint::OpenFile) on arbitrary file contents: it
// must return an error or tensors that lie inside the file, never read out of bounds.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "tome/engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An in-memory file: no disk traffic per input.
  const int fd = memfd_create("safetensors_fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto checkpoint = tome::engine::SafetensorsCheckpoint::OpenFile(path);
  if (checkpoint.ok()) {
    std::vector<float> values;
    for (const auto& [name, tensor] : (*checkpoint)->tensors()) {
      FUZZ_CHECK(tensor.num_bytes >= 0 && static_cast<size_t>(tensor.num_bytes) <= size);
      FUZZ_CHECK(tensor.num_elements() * tome::engine::TensorDTypeSize(tensor.dtype) ==
                 tensor.num_bytes);
      values.resize(tensor.num_elements());
      tome::engine::SafetensorsCheckpoint::ToFloat32(tensor, values.data());
      auto found = (*checkpoint)->Find(name);
      FUZZ_CHECK(found.ok() && *found == &tensor);
    }
  }
  close(fd);
  return 0;
}
