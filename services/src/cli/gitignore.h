// A .gitignore-style matcher for `tome ingest DIR`.
//
// Supports the common syntax of gitignore(5): blank lines and `#` comments, `!` negation,
// trailing `/` (directories only), anchoring by a leading or middle `/`, `*`, `?`, `[...]`,
// `**` (leading `**/`, trailing `/**`, middle `/**/`), `\` escapes and trailing-space
// trimming. Rules of a nested .gitignore apply below its directory and come after (so
// override) the rules of its ancestors; the last matching rule decides.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tome::cli {

// Glob match of gitignore patterns against a `/`-separated path: `*` and `?` never match
// `/`, `**/` matches zero or more directories, other `**` match anything.
bool GlobMatch(absl::string_view pattern, absl::string_view path);

class GitignoreMatcher {
 public:
  // Adds the rules of one .gitignore file's `content`; `base` is the directory holding it,
  // relative to the walk's root ("" for the root, else without a trailing `/`).
  void AddRules(absl::string_view base, absl::string_view content);

  // Whether `path` (relative to the root, `/`-separated) is excluded by the rules. Only the
  // path itself is checked: a walker must not descend into an ignored directory, which is
  // how everything below one is excluded (and why a `!` cannot re-include it, as in git).
  bool Ignored(absl::string_view path, bool is_dir) const;

  size_t num_rules() const { return rules_.size(); }

 private:
  struct Rule {
    std::string base;     // directory of the .gitignore ("" = root)
    std::string pattern;  // without `!`, leading `/` and trailing `/`
    bool negate = false;
    bool dir_only = false;
    bool anchored = false;  // matched against the whole path below `base`, else the name
  };
  std::vector<Rule> rules_;
};

}  // namespace tome::cli
