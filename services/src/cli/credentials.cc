#include "cli/credentials.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "cli/text_files.h"

namespace tome::cli {
namespace {

absl::string_view Unquote(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
    s = s.substr(1, s.size() - 2);
  }
  return s;
}

// Whether `line` is `name=value` / `name: value` rather than a bare key (which may itself
// hold `=` or `:`, e.g. base64 padding).
bool IsField(absl::string_view line, size_t sep) {
  if (sep == absl::string_view::npos || sep == 0) return false;
  const absl::string_view name = absl::StripTrailingAsciiWhitespace(line.substr(0, sep));
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-' && c != '.') return false;
  }
  const absl::string_view value = absl::StripAsciiWhitespace(line.substr(sep + 1));
  return value.find_first_not_of("=") != absl::string_view::npos;
}

}  // namespace

absl::StatusOr<std::string> ParseKeyFile(absl::string_view content, absl::string_view field) {
  absl::string_view first;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t sep = line.find_first_of("=:");
    if (!IsField(line, sep)) {
      if (first.empty()) first = line;
      continue;
    }
    absl::string_view name = absl::StripAsciiWhitespace(line.substr(0, sep));
    // Accept TOME_API_KEY=... (an env file) as well as api_key=... .
    if (absl::EqualsIgnoreCase(name, field) ||
        absl::EqualsIgnoreCase(name, absl::StrCat("tome_", field))) {
      absl::string_view value = Unquote(line.substr(sep + 1));
      if (!value.empty()) return std::string(value);
    }
  }
  if (!first.empty()) return std::string(Unquote(first));
  return absl::InvalidArgumentError(
      absl::StrCat("no ", field, " in the key file (expected the key alone or `", field,
                   "=KEY`)"));
}

absl::StatusOr<std::string> ResolveKey(absl::string_view flag_value, const char* env_var,
                                       const std::string& file_path, absl::string_view field) {
  if (!flag_value.empty()) return std::string(flag_value);
  if (const char* env = std::getenv(env_var); env != nullptr && *env != '\0') return env;
  if (file_path.empty()) return std::string();
  std::string content, error;
  if (!ReadFile(file_path, &content, &error)) {
    return absl::NotFoundError(absl::StrCat("cannot read key file ", error));
  }
  auto key = ParseKeyFile(content, field);
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(file_path, ": ", key.status().message()));
  }
  return key;
}

}  // namespace tome::cli
