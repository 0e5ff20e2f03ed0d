#include "session_record.h"

#include <algorithm>
#include <cstring>
#include <exception>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tome/base/json_int.h"

namespace tome::services {

using json = nlohmann::json;

int64_t SessionInfo::expire_micros() const {
  // Clamp both terms so the sum stays far from int64 overflow.
  const int64_t ttl = std::clamp<int64_t>(ttl_seconds, 0, kMaxSessionTtlSeconds) * 1000000;
  const int64_t last = std::clamp<int64_t>(last_used_micros, 0, int64_t{1} << 62);
  return last + ttl;
}

std::string EncodeSessionRecord(const SessionInfo& s) {
  const json j = {{"format", 1},
                  {"tenant", s.tenant},
                  {"doc_owner", s.doc_owner},
                  {"document", s.document},
                  {"version", s.version},
                  {"doc_tokens", s.doc_tokens},
                  {"turns", s.turns},
                  {"tail_tokens", s.tail.size()},
                  {"created_micros", s.created_micros},
                  {"last_used_micros", s.last_used_micros},
                  {"ttl_seconds", s.ttl_seconds},
                  {"parent", s.parent}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<SessionInfo> DecodeSessionRecord(absl::string_view id, absl::string_view value,
                                                int64_t* tail_tokens) {
  const auto damaged = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("session ", id.substr(0, 64), " is damaged (", why,
                                            ")"));
  };
  const json j = json::parse(value.begin(), value.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("document")) return damaged("not a session record");
  SessionInfo s;
  s.id = std::string(id);
  try {
    // Fields of another type throw (json::type_error, or std::out_of_range from JsonIntOr
    // for non-integers and integers out of range): damage, not a crash.
    using base::JsonIntOr;
    s.tenant = JsonIntOr<storage::TenantId>(j, "tenant", 0);
    s.doc_owner = JsonIntOr<storage::TenantId>(j, "doc_owner", 0);
    s.document = JsonIntOr<storage::DocumentId>(j, "document", 0);
    s.version = JsonIntOr<int64_t>(j, "version", 0);
    s.doc_tokens = JsonIntOr<int64_t>(j, "doc_tokens", 0);
    s.turns = JsonIntOr<int64_t>(j, "turns", 0);
    s.created_micros = JsonIntOr<int64_t>(j, "created_micros", 0);
    s.last_used_micros = JsonIntOr<int64_t>(j, "last_used_micros", 0);
    s.ttl_seconds = JsonIntOr<int64_t>(j, "ttl_seconds", 0);
    s.parent = j.value("parent", "");
    *tail_tokens = JsonIntOr<int64_t>(j, "tail_tokens", 0);
  } catch (const std::exception& e) {
    return damaged(e.what());
  }
  if (*tail_tokens < 0 || *tail_tokens > kMaxSessionTailTokens) {
    return damaged(absl::StrCat("tail_tokens ", *tail_tokens));
  }
  if (s.version < 0 || s.doc_tokens < 0 || s.turns < 0 || s.ttl_seconds < 0) {
    return damaged("a negative count");
  }
  return s;
}

std::string EncodeSessionTail(const std::vector<int32_t>& tail) {
  std::string out(tail.size() * 4, '\0');
  for (size_t i = 0; i < tail.size(); ++i) {
    const uint32_t v = static_cast<uint32_t>(tail[i]);
    for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<char>((v >> (8 * b)) & 0xff);
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> DecodeSessionTail(absl::string_view value, int64_t tokens) {
  if (tokens < 0 || static_cast<uint64_t>(tokens) > value.size() / 4) {
    return absl::DataLossError(absl::StrCat("a session tail of ", value.size(),
                                            " bytes cannot hold ", tokens, " tokens"));
  }
  std::vector<int32_t> tail(tokens);
  for (int64_t i = 0; i < tokens; ++i) {
    uint32_t v = 0;
    for (int b = 3; b >= 0; --b) v = (v << 8) | static_cast<uint8_t>(value[4 * i + b]);
    tail[i] = static_cast<int32_t>(v);
  }
  return tail;
}

}  // namespace tome::services
