// Splits a fuzz input into typed values (a small stand-in for libFuzzer's FuzzedDataProvider,
// whose header only clang ships: the corpus replays also build with GCC). Integers come from
// the end of the input and byte strings from the front, so mutating one rarely shifts the
// other; once the input is used up every value is zero or empty.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace tome::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_; }

  template <typename T>
  T Integral() {
    return IntegralInRange<T>(std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
  }

  // A value in [lo, hi].
  template <typename T>
  T IntegralInRange(T lo, T hi) {
    static_assert(std::is_integral_v<T>);
    using U = std::make_unsigned_t<T>;
    const uint64_t range = static_cast<uint64_t>(static_cast<U>(hi) - static_cast<U>(lo));
    uint64_t value = 0;
    for (size_t bits = 0; bits < 64 && (range >> bits) > 0 && size_ > 0; bits += 8) {
      value = (value << 8) | data_[--size_];
    }
    if (range != std::numeric_limits<uint64_t>::max()) value %= range + 1;
    return static_cast<T>(static_cast<U>(static_cast<U>(lo) + static_cast<U>(value)));
  }

  bool Bool() { return IntegralInRange<int>(0, 1) == 1; }

  // Any float, NaN and infinities included.
  float Float() {
    const uint32_t bits = Integral<uint32_t>();
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }

  // Up to `max` bytes; a backslash followed by another ends the string early (as in
  // FuzzedDataProvider), so lengths mutate easily.
  std::string RandomLengthString(size_t max) {
    std::string out;
    while (out.size() < max && size_ > 0) {
      const char c = static_cast<char>(*data_);
      ++data_;
      --size_;
      if (c == '\\' && size_ > 0) {
        const char next = static_cast<char>(*data_);
        ++data_;
        --size_;
        if (next != '\\') break;
      }
      out.push_back(c);
    }
    return out;
  }

  std::string Bytes(size_t n) {
    n = std::min(n, size_);
    std::string out(reinterpret_cast<const char*>(data_), n);
    data_ += n;
    size_ -= n;
    return out;
  }

  std::string Rest() { return Bytes(size_); }

 private:
  const uint8_t* data_;
  size_t size_;
};

}  // namespace tome::fuzz
