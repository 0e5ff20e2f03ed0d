// Strict integer reads from nlohmann::json values, for decoders of stored records and
// files. nlohmann's get<int64_t>() converts a floating-point number with static_cast, which
// is undefined behaviour when it is out of range (1e30) and silently truncates otherwise
// (3.5), and it wraps unsigned values above INT64_MAX. These accept only JSON integers that
// fit T, and throw std::out_of_range otherwise (decoders catch std::exception and report
// damage). Header-only; include it where nlohmann/json.hpp is available.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "nlohmann/json.hpp"

namespace tome::base {

template <typename T>
T JsonInt(const nlohmann::json& value) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (!value.is_number_integer()) {
    throw std::out_of_range("expected an integer, found " + std::string(value.type_name()));
  }
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      throw std::out_of_range("integer " + std::to_string(u) + " is out of range");
    }
    return static_cast<T>(u);
  }
  const int64_t i = value.get<int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (i < 0 || static_cast<uint64_t>(i) > std::numeric_limits<T>::max()) {
      throw std::out_of_range("integer " + std::to_string(i) + " is out of range");
    }
  } else {
    if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max()) {
      throw std::out_of_range("integer " + std::to_string(i) + " is out of range");
    }
  }
  return static_cast<T>(i);
}

// `object[key]` as T, or `fallback` when the key is absent or null.
template <typename T>
T JsonIntOr(const nlohmann::json& object, const char* key, T fallback) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  return JsonInt<T>(*it);
}

// An array of integers as std::vector<T>.
template <typename T>
std::vector<T> JsonIntArray(const nlohmann::json& value) {
  if (!value.is_array()) throw std::out_of_range("expected an array of integers");
  std::vector<T> out;
  out.reserve(value.size());
  for (const nlohmann::json& v : value) out.push_back(JsonInt<T>(v));
  return out;
}

}  // namespace tome::base
