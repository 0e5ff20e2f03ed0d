// Where the CLI finds its API keys.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tome::cli {

// The key to send: `flag_value` if non-empty, else the environment variable `env_var` if
// set and non-empty, else the contents of `file_path` if non-empty (see ParseKeyFile), else
// "" (send none). NOT_FOUND / INVALID_ARGUMENT if the file cannot be read or holds no key.
absl::StatusOr<std::string> ResolveKey(absl::string_view flag_value, const char* env_var,
                                       const std::string& file_path, absl::string_view field);

// A key file holds either just the key (its first line that is neither blank nor a `#`
// comment), or `name=value` / `name: value` lines, of which the one named `field`
// ("api_key" or "admin_key") is taken. Surrounding whitespace and quotes are dropped.
absl::StatusOr<std::string> ParseKeyFile(absl::string_view content, absl::string_view field);

}  // namespace tome::cli
