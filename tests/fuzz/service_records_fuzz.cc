// The service records (sessions, session tails, tenants, API keys) on arbitrary bytes: the
// first byte picks the decoder. Errors or records that survive a round trip; never a crash
// (an uncaught json exception would terminate the server).
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "auth/tenants.h"
#include "session_record.h"
#include "tests/fuzz/fuzz_util.h"

namespace services = tome::services;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view value(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      int64_t tail_tokens = 0;
      auto s = services::DecodeSessionRecord("s0123456789abcdef", value, &tail_tokens);
      if (!s.ok()) {
        FUZZ_CHECK(s.status().code() == absl::StatusCode::kDataLoss);
        break;
      }
      FUZZ_CHECK(tail_tokens >= 0 && tail_tokens <= services::kMaxSessionTailTokens);
      (void)s->expire_micros();
      const std::string encoded = services::EncodeSessionRecord(*s);
      int64_t again_tokens = 0;
      auto again = services::DecodeSessionRecord(s->id, encoded, &again_tokens);
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(again_tokens == 0);  // s->tail is empty: decoding leaves it so
      FUZZ_CHECK(services::EncodeSessionRecord(*again) == encoded);
      break;
    }
    case 1: {
      const int64_t tokens = value.empty() ? 0 : static_cast<int8_t>(value[0]);
      auto tail = services::DecodeSessionTail(value, tokens);
      if (tail.ok()) {
        FUZZ_CHECK(static_cast<int64_t>(tail->size()) == tokens);
        FUZZ_CHECK(services::EncodeSessionTail(*tail) == value.substr(0, 4 * tokens));
      }
      break;
    }
    case 2: {
      auto t = services::DecodeTenantRecord(value);
      if (t.ok()) {
        auto again = services::DecodeTenantRecord(services::EncodeTenantRecord(*t));
        FUZZ_CHECK(again.ok());
        FUZZ_CHECK(services::EncodeTenantRecord(*again) == services::EncodeTenantRecord(*t));
      } else {
        FUZZ_CHECK(t.status().code() == absl::StatusCode::kDataLoss);
      }
      break;
    }
    case 3: {
      auto k = services::DecodeApiKeyRecord(value);
      if (k.ok()) {
        auto again = services::DecodeApiKeyRecord(services::EncodeApiKeyRecord(*k));
        FUZZ_CHECK(again.ok());
        FUZZ_CHECK(services::EncodeApiKeyRecord(*again) == services::EncodeApiKeyRecord(*k));
      } else {
        FUZZ_CHECK(k.status().code() == absl::StatusCode::kDataLoss);
      }
      break;
    }
  }
  return 0;
}
