#include "cli/text_files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/string_view.h"

namespace tome::cli {

bool IsValidUtf8(absl::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int extra;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= extra) return false;
    for (int i = 1; i <= extra; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += extra + 1;
  }
  return true;
}

std::string BinaryReason(absl::string_view content) {
  // Git's heuristic: a NUL byte early on means binary.
  if (content.substr(0, 8192).find('\0') != absl::string_view::npos) return "binary (NUL byte)";
  if (!IsValidUtf8(content)) return "not UTF-8";
  return "";
}

bool ReadFile(const std::string& path, std::string* content, std::string* error) {
  std::stringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      *error = path + ": " + std::strerror(errno);
      return false;
    }
    ss << in.rdbuf();
    if (in.bad()) {
      *error = path + ": read error";
      return false;
    }
  }
  *content = std::move(ss).str();
  return true;
}

}  // namespace tome::cli
