#include "tome/engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "tome/base/status_macros.h"

namespace tome::engine {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kMaxHeaderBytes = uint64_t{256} << 20;

absl::StatusOr<TensorDType> ParseDType(const std::string& name) {
  if (name == "F32") return TensorDType::kF32;
  if (name == "BF16") return TensorDType::kBF16;
  if (name == "F16") return TensorDType::kF16;
  return absl::UnimplementedError(
      absl::StrCat("tensor dtype ", name, " is not supported (F32, BF16 and F16 are)"));
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

const char* TensorDTypeName(TensorDType dtype) {
  switch (dtype) {
    case TensorDType::kF32: return "F32";
    case TensorDType::kBF16: return "BF16";
    case TensorDType::kF16: return "F16";
  }
  return "?";
}

int64_t TensorDTypeSize(TensorDType dtype) { return dtype == TensorDType::kF32 ? 4 : 2; }

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float BFloat16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t FloatToBFloat16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t FloatToHalf(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const int32_t exp = static_cast<int32_t>((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mant = bits & 0x7fffff;
  if (((bits >> 23) & 0xff) == 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const int shift = 14 - exp;
    uint32_t half_mant = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half_mant & 1))) ++half_mant;
    return sign | static_cast<uint16_t>(half_mant);
  }
  uint16_t out = sign | static_cast<uint16_t>(exp << 10) | static_cast<uint16_t>(mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (out & 1))) ++out;
  return out;
}

SafetensorsCheckpoint::~SafetensorsCheckpoint() {
  for (Mapping& m : files_) {
    if (m.base) munmap(m.base, m.size);
  }
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenFile(
    const std::string& path) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  TOME_RETURN_IF_ERROR(ckpt->AddFile(path, 0, nullptr));
  return ckpt;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& dir) {
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  if (!fs::exists(index_path)) {
    if (!fs::exists(single_path)) {
      return absl::NotFoundError(absl::StrCat(
          "no model.safetensors or model.safetensors.index.json in ", dir));
    }
    return OpenFile(single_path.string());
  }
  TOME_ASSIGN_OR_RETURN(std::string text, ReadTextFile(index_path.string()));
  json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path.string(), ": expected an object with a \"weight_map\""));
  }
  std::map<std::string, std::vector<std::string>> names_by_file;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": weight_map entry for ", name, " is not a string"));
    }
    const std::string f = file.get<std::string>();
    if (f.find('/') != std::string::npos || f.find("..") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": shard name '", f, "' must be a plain file name"));
    }
    names_by_file[f].push_back(name);
  }
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  int shard = 0;
  for (const auto& [file, names] : names_by_file) {
    TOME_RETURN_IF_ERROR(ckpt->AddFile((fs::path(dir) / file).string(), shard++, &names));
  }
  return ckpt;
}

absl::Status SafetensorsCheckpoint::AddFile(const std::string& path, int shard,
                                            const std::vector<std::string>* expected_names) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(path, ": too short for a safetensors file"));
  }
  void* base = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) return absl::InternalError(absl::StrCat("cannot mmap ", path));
  files_.push_back(Mapping{path, base, size});
  const uint8_t* bytes = static_cast<const uint8_t*>(base);

  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);  // little-endian on every platform Tome supports
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_len,
                                            " does not fit the file of ", size, " bytes"));
  }
  json header = json::parse(bytes + 8, bytes + 8 + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": header is not a JSON object"));
  }
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (const auto& item : header.items()) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one in `bad`.
    const std::string& name = item.key();
    const json& entry = item.value();
    if (name == "__metadata__") continue;
    auto bad = [&](absl::string_view why) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", name, ": ", why));
    };
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() ||
        !entry.contains("shape") || !entry["shape"].is_array() ||
        !entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2) {
      return bad("needs dtype, shape and data_offsets");
    }
    TensorInfo info;
    info.name = name;
    info.shard = shard;
    TOME_ASSIGN_OR_RETURN(info.dtype, ParseDType(entry["dtype"].get<std::string>()));
    uint64_t numel = 1;
    for (const auto& dim : entry["shape"]) {
      if (!dim.is_number_unsigned()) return bad("shape must hold non-negative integers");
      const uint64_t d = dim.get<uint64_t>();
      if (d != 0 && numel > (uint64_t{1} << 48) / d) return bad("shape is too large");
      numel *= d;
      info.shape.push_back(static_cast<int64_t>(d));
    }
    const auto& off = entry["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return bad("data_offsets must be non-negative integers");
    }
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size) return bad("data_offsets point outside the file");
    if (end - begin != numel * static_cast<uint64_t>(TensorDTypeSize(info.dtype))) {
      return bad("byte size does not match dtype and shape");
    }
    info.data = data + begin;
    info.num_bytes = static_cast<int64_t>(end - begin);
    if (!tensors_.emplace(name, std::move(info)).second) {
      return bad("appears in more than one shard");
    }
  }
  if (expected_names) {
    for (const std::string& name : *expected_names) {
      auto it = tensors_.find(name);
      if (it == tensors_.end() || it->second.shard != shard) {
        return absl::DataLossError(absl::StrCat(
            "model.safetensors.index.json maps ", name, " to ", path, ", which lacks it"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const TensorInfo*> SafetensorsCheckpoint::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint has no tensor ", name));
  }
  return &it->second;
}

void SafetensorsCheckpoint::ToFloat32(const TensorInfo& tensor, float* out) {
  const int64_t n = tensor.num_elements();
  if (n == 0) return;  // an empty tensor's pointers may be null: memcpy must not see them
  switch (tensor.dtype) {
    case TensorDType::kF32:
      std::memcpy(out, tensor.data, n * sizeof(float));
      break;
    case TensorDType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, tensor.data + 2 * i, 2);
        out[i] = BFloat16ToFloat(v);
      }
      break;
    case TensorDType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, tensor.data + 2 * i, 2);
        out[i] = HalfToFloat(v);
      }
      break;
  }
}

void SafetensorsCheckpoint::Release(const TensorInfo& tensor) const {
  const long page = sysconf(_SC_PAGESIZE);
  const uintptr_t begin = reinterpret_cast<uintptr_t>(tensor.data);
  const uintptr_t end = begin + tensor.num_bytes;
  const uintptr_t aligned_begin = (begin + page - 1) / page * page;
  const uintptr_t aligned_end = end / page * page;
  if (aligned_end > aligned_begin) {
    madvise(reinterpret_cast<void*>(aligned_begin), aligned_end - aligned_begin, MADV_DONTNEED);
  }
}

absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorToWrite> tensors,
                              TensorDType dtype) {
  json header = json::object();
  uint64_t offset = 0;
  const int64_t elem = TensorDTypeSize(dtype);
  for (const TensorToWrite& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    header[t.name] = {{"dtype", TensorDTypeName(dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + numel * elem}}};
    offset += numel * elem;
  }
  header["__metadata__"] = {{"format", "pt"}};
  std::string header_text = header.dump();
  while ((header_text.size() + 8) % 8 != 0) header_text.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  const uint64_t header_len = header_text.size();
  out.write(reinterpret_cast<const char*>(&header_len), 8);
  out.write(header_text.data(), header_text.size());
  std::vector<uint8_t> buffer;
  for (const TensorToWrite& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    buffer.resize(numel * elem);
    for (int64_t i = 0; i < numel; ++i) {
      if (dtype == TensorDType::kF32) {
        std::memcpy(buffer.data() + 4 * i, t.data + i, 4);
      } else {
        const uint16_t v =
            dtype == TensorDType::kBF16 ? FloatToBFloat16(t.data[i]) : FloatToHalf(t.data[i]);
        std::memcpy(buffer.data() + 2 * i, &v, 2);
      }
    }
    out.write(reinterpret_cast<const char*>(buffer.data()), buffer.size());
  }
  out.flush();
  if (!out) return absl::DataLossError(absl::StrCat("short write to ", path));
  return absl::OkStatus();
}

absl::Status WriteSafetensorsCheckpoint(const std::string& dir,
                                        absl::Span<const TensorToWrite> tensors,
                                        TensorDType dtype, int num_shards) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (num_shards <= 1) {
    return WriteSafetensors((fs::path(dir) / "model.safetensors").string(), tensors, dtype);
  }
  json weight_map = json::object();
  const size_t per_shard = (tensors.size() + num_shards - 1) / num_shards;
  uint64_t total_bytes = 0;
  for (int s = 0; s < num_shards; ++s) {
    const size_t begin = std::min(tensors.size(), s * per_shard);
    const size_t end = std::min(tensors.size(), begin + per_shard);
    const std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, num_shards);
    TOME_RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / name).string(),
                                          tensors.subspan(begin, end - begin), dtype));
    for (size_t i = begin; i < end; ++i) {
      weight_map[tensors[i].name] = name;
      int64_t numel = 1;
      for (int64_t d : tensors[i].shape) numel *= d;
      total_bytes += numel * TensorDTypeSize(dtype);
    }
  }
  json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  std::ofstream out(fs::path(dir) / "model.safetensors.index.json", std::ios::trunc);
  out << index.dump(2);
  if (!out) return absl::DataLossError("cannot write model.safetensors.index.json");
  return absl::OkStatus();
}

}  // namespace tome::engine
