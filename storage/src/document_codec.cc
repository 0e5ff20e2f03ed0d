#include "document_codec.h"

#include <cstdint>
#include <exception>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tome/base/json_int.h"

namespace tome::storage {
namespace {

using nlohmann::json;
using base::JsonInt;
using base::JsonIntArray;

// Bytes of the valid UTF-8 sequence starting at text[i], or 0 if none starts there.
size_t Utf8SequenceLength(absl::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  auto cont = [&](size_t k, uint8_t lo = 0x80, uint8_t hi = 0xbf) {
    return k < text.size() && byte(k) >= lo && byte(k) <= hi;
  };
  const uint8_t b = byte(i);
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    // No overlong forms (E0 80..9F) and no surrogates (ED A0..BF).
    const uint8_t lo = b == 0xe0 ? 0xa0 : 0x80;
    const uint8_t hi = b == 0xed ? 0x9f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    // No overlong forms (F0 80..8F) and nothing above U+10FFFF (F4 90..).
    const uint8_t lo = b == 0xf0 ? 0x90 : 0x80;
    const uint8_t hi = b == 0xf4 ? 0x8f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

absl::string_view StatusName(DocumentStatus status) {
  switch (status) {
    case DocumentStatus::kEmpty:
      return "empty";
    case DocumentStatus::kIngesting:
      return "ingesting";
    case DocumentStatus::kReady:
      return "ready";
    case DocumentStatus::kFailed:
      return "failed";
  }
  return "";
}

bool ParseStatusName(absl::string_view name, DocumentStatus* status) {
  for (DocumentStatus s : {DocumentStatus::kEmpty, DocumentStatus::kIngesting,
                           DocumentStatus::kReady, DocumentStatus::kFailed}) {
    if (name == StatusName(s)) {
      *status = s;
      return true;
    }
  }
  return false;
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      out.append("\xef\xbf\xbd");
      ++i;
    } else {
      out.append(text.data() + i, n);
      i += n;
    }
  }
  return out;
}

absl::StatusOr<std::string> EncodeDocument(const DocumentRecord& record) {
  if (!IsValidUtf8(record.name)) {
    return absl::InvalidArgumentError("the document name must be valid UTF-8");
  }
  const absl::string_view status = StatusName(record.status);
  if (status.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown document status ", static_cast<int>(record.status)));
  }
  json j = {
      {"format", kDocumentFormat},
      {"tenant", record.tenant},
      {"id", record.id},
      {"name", record.name},
      {"created_micros", record.created_micros},
      {"updated_micros", record.updated_micros},
      {"version", record.version},
      {"text_bytes", record.text_bytes},
      {"num_tokens", record.num_tokens},
      {"state_tokens", record.state_tokens},
      {"status", std::string(status)},
      {"error", SanitizeUtf8(record.error)},
      {"checkpoints", record.checkpoints},
      {"public", record.is_public},
      {"shared_with", record.shared_with},
  };
  json versions = json::array();
  for (const VersionInfo& v : record.versions) {
    versions.push_back(json::array({v.version, v.num_tokens, v.text_bytes, v.created_micros}));
  }
  j["versions"] = std::move(versions);
  return j.dump();
}

absl::StatusOr<DocumentRecord> DecodeDocument(absl::string_view value, TenantId tenant,
                                              DocumentId id) {
  const std::string where = absl::StrCat("document ", id, " of tenant ", tenant);
  json j = json::parse(value.begin(), value.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::DataLossError(absl::StrCat(where, ": the stored record is not JSON"));
  }
  DocumentRecord record;
  try {
    const int format = JsonInt<int>(j.at("format"));
    if (format > kDocumentFormat) {
      return absl::FailedPreconditionError(absl::StrCat(where, ": record format ", format,
                                                        " is newer than this Tome reads (",
                                                        kDocumentFormat, ")"));
    }
    record.tenant = JsonInt<TenantId>(j.at("tenant"));
    record.id = JsonInt<DocumentId>(j.at("id"));
    record.name = j.at("name").get<std::string>();
    record.created_micros = JsonInt<int64_t>(j.at("created_micros"));
    record.updated_micros = JsonInt<int64_t>(j.at("updated_micros"));
    record.version = JsonInt<int64_t>(j.at("version"));
    record.text_bytes = JsonInt<int64_t>(j.at("text_bytes"));
    record.num_tokens = JsonInt<int64_t>(j.at("num_tokens"));
    record.state_tokens = JsonInt<int64_t>(j.at("state_tokens"));
    record.error = j.at("error").get<std::string>();
    // Absent in records written before versions were tracked: one version, no checkpoints.
    if (j.contains("versions")) {
      for (const json& v : j.at("versions")) {
        record.versions.push_back({JsonInt<int64_t>(v.at(0)), JsonInt<int64_t>(v.at(1)),
                                   JsonInt<int64_t>(v.at(2)), JsonInt<int64_t>(v.at(3))});
      }
    }
    if (j.contains("checkpoints")) {
      record.checkpoints = JsonIntArray<int64_t>(j.at("checkpoints"));
    }
    if (j.contains("public")) record.is_public = j.at("public").get<bool>();
    if (j.contains("shared_with")) {
      record.shared_with = JsonIntArray<TenantId>(j.at("shared_with"));
    }
    if (!ParseStatusName(j.at("status").get<std::string>(), &record.status)) {
      return absl::DataLossError(absl::StrCat(where, ": unknown status ", j.at("status").dump()));
    }
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(where, ": malformed record: ", e.what()));
  }
  if (record.version < 0 || record.text_bytes < 0 || record.num_tokens < 0 ||
      record.state_tokens < 0 || record.state_tokens > record.num_tokens) {
    return absl::DataLossError(absl::StrCat(where, ": the record's counts are inconsistent"));
  }
  if (record.tenant != tenant || record.id != id) {
    return absl::DataLossError(absl::StrCat(where, ": the record stored under its key is of ",
                                            "document ", record.id, " of tenant ", record.tenant));
  }
  return record;
}

std::string EncodeSection(absl::string_view name, int64_t begin_byte) {
  return json{{"format", kDocumentFormat}, {"name", std::string(name)}, {"begin_byte", begin_byte}}
      .dump();
}

absl::Status DecodeSection(absl::string_view value, std::string* name, int64_t* begin_byte) {
  json j = json::parse(value.begin(), value.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string() ||
      !j.contains("begin_byte") || !j["begin_byte"].is_number_integer()) {
    return absl::DataLossError("a stored section record is damaged");
  }
  try {
    *begin_byte = JsonInt<int64_t>(j["begin_byte"]);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("a stored section record is damaged: ", e.what()));
  }
  *name = j["name"].get<std::string>();
  return absl::OkStatus();
}

}  // namespace tome::storage
