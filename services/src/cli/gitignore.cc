#include "cli/gitignore.h"

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace tome::cli {
namespace {

// Matches a `[...]` class at `pattern[*pi]` (just after the `[`) against `c`; advances `*pi`
// past the `]`. Returns false in `*valid` if the class is unterminated (then `[` is literal).
bool MatchClass(absl::string_view pattern, size_t* pi, char c, bool* valid) {
  size_t i = *pi;
  bool negate = false;
  if (i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^')) {
    negate = true;
    ++i;
  }
  bool matched = false;
  bool first = true;
  while (i < pattern.size() && (pattern[i] != ']' || first)) {
    first = false;
    char lo = pattern[i];
    if (lo == '\\' && i + 1 < pattern.size()) lo = pattern[++i];
    char hi = lo;
    if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
      hi = pattern[i + 2];
      i += 2;
    }
    if (lo <= c && c <= hi) matched = true;
    ++i;
  }
  if (i >= pattern.size()) {
    *valid = false;
    return false;
  }
  *valid = true;
  *pi = i + 1;
  return matched != negate && c != '/';
}

bool Match(absl::string_view p, size_t pi, absl::string_view s, size_t si) {
  while (pi < p.size()) {
    const char c = p[pi];
    if (c == '*') {
      // `**` is special only as a whole path component; elsewhere it acts like `*`.
      const bool double_star = pi + 1 < p.size() && p[pi + 1] == '*';
      const bool component_start = pi == 0 || p[pi - 1] == '/';
      if (double_star && component_start && (pi + 2 == p.size() || p[pi + 2] == '/')) {
        if (pi + 2 == p.size()) return true;  // trailing `**`: everything
        // `**/`: zero or more directories.
        const size_t rest = pi + 3;
        if (Match(p, rest, s, si)) return true;
        for (size_t i = si; i < s.size(); ++i) {
          if (s[i] == '/' && Match(p, rest, s, i + 1)) return true;
        }
        return false;
      }
      size_t rest = pi + 1;
      while (rest < p.size() && p[rest] == '*') ++rest;
      for (size_t i = si;; ++i) {
        if (Match(p, rest, s, i)) return true;
        if (i == s.size() || s[i] == '/') return false;
      }
    }
    if (si == s.size()) return false;
    if (c == '?') {
      if (s[si] == '/') return false;
      ++pi;
      ++si;
      continue;
    }
    if (c == '[') {
      size_t next = pi + 1;
      bool valid = false;
      const bool matched = MatchClass(p, &next, s[si], &valid);
      if (valid) {
        if (!matched) return false;
        pi = next;
        ++si;
        continue;
      }
      // Unterminated class: a literal `[`.
    }
    char literal = c;
    if (c == '\\' && pi + 1 < p.size()) literal = p[++pi];
    if (s[si] != literal) return false;
    ++pi;
    ++si;
  }
  return si == s.size();
}

}  // namespace

bool GlobMatch(absl::string_view pattern, absl::string_view path) {
  return Match(pattern, 0, path, 0);
}

void GitignoreMatcher::AddRules(absl::string_view base, absl::string_view content) {
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // Trailing spaces are dropped unless escaped with a backslash.
    while (!line.empty() && line.back() == ' ' &&
           !(line.size() >= 2 && line[line.size() - 2] == '\\')) {
      line.remove_suffix(1);
    }
    if (line.empty() || line[0] == '#') continue;
    Rule rule;
    rule.base = std::string(base);
    if (line[0] == '!') {
      rule.negate = true;
      line.remove_prefix(1);
    }
    if (!line.empty() && line.back() == '/') {
      rule.dir_only = true;
      line.remove_suffix(1);
    }
    rule.anchored = line.find('/') != absl::string_view::npos;
    if (!line.empty() && line[0] == '/') line.remove_prefix(1);
    if (line.empty()) continue;
    rule.pattern = std::string(line);
    rules_.push_back(std::move(rule));
  }
}

bool GitignoreMatcher::Ignored(absl::string_view path, bool is_dir) const {
  const size_t slash = path.rfind('/');
  const absl::string_view name = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  bool ignored = false;
  for (const Rule& rule : rules_) {
    if (rule.dir_only && !is_dir) continue;
    if (rule.negate == !ignored) continue;  // cannot change the outcome
    absl::string_view rel = path;
    if (!rule.base.empty()) {
      if (rel.size() <= rule.base.size() || rel.substr(0, rule.base.size()) != rule.base ||
          rel[rule.base.size()] != '/') {
        continue;
      }
      rel.remove_prefix(rule.base.size() + 1);
    }
    if (GlobMatch(rule.pattern, rule.anchored ? rel : name)) ignored = !rule.negate;
  }
  return ignored;
}

}  // namespace tome::cli
