// Request validation on arbitrary field values: ids, Ask parameters, AppendText text and
// sections. Checks the validators' promises, not just the absence of crashes.

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "request_validation.h"  // services/src
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_util.h"
#include "tome/engine/tokenizer.h"

namespace services = tome::services;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tome::fuzz::FuzzInput in(data, size);
  const std::string id_text = in.RandomLengthString(32);
  if (auto id = services::ParseDocumentId(id_text); id.ok()) {
    uint64_t parsed = 0;
    FUZZ_CHECK(*id != 0 && absl::SimpleAtoi(id_text, &parsed) && parsed == *id);
    FUZZ_CHECK(id_text.find_first_not_of("0123456789") == std::string::npos);
  } else {
    FUZZ_CHECK(id.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(id.status().message().size() < 200);  // quotes at most 64 bytes of input
  }
  (void)services::ParseTenantId(id_text);

  services::RequestLimits limits;
  limits.max_question_bytes = in.IntegralInRange<int64_t>(1, 256);
  limits.max_generated_tokens = in.IntegralInRange<int32_t>(1, 4096);
  limits.max_document_bytes = in.IntegralInRange<int64_t>(1, 1024);

  services::AskParams ask;
  ask.document = in.Integral<uint64_t>();
  if (in.Bool()) ask.session_id = in.RandomLengthString(20);
  ask.question = in.RandomLengthString(300);
  ask.max_tokens = in.Integral<int32_t>();
  ask.temperature = in.Float();
  ask.top_p = in.Float();
  ask.version = in.Integral<int64_t>();
  if (services::ValidateAskParams(ask, limits).ok()) {
    FUZZ_CHECK(!ask.question.empty());
    FUZZ_CHECK(static_cast<int64_t>(ask.question.size()) <= limits.max_question_bytes);
    FUZZ_CHECK(tome::engine::IsValidUtf8(ask.question));
    FUZZ_CHECK(ask.max_tokens >= 0 && ask.max_tokens <= limits.max_generated_tokens);
    FUZZ_CHECK(std::isfinite(ask.temperature) && std::isfinite(ask.top_p));
    FUZZ_CHECK(ask.session_id.empty() || (ask.document == 0 && ask.version == 0));
  }

  std::vector<services::SectionStart> sections;
  const int num_sections = in.IntegralInRange(0, 4);
  for (int i = 0; i < num_sections; ++i) {
    sections.push_back({in.RandomLengthString(8), in.Integral<int64_t>()});
  }
  const std::string text = in.Rest();
  if (services::ValidateAppend(text, sections, limits).ok()) {
    FUZZ_CHECK(!text.empty() && static_cast<int64_t>(text.size()) <= limits.max_document_bytes);
    FUZZ_CHECK(tome::engine::IsValidUtf8(text));
    int64_t previous = -1;
    for (const auto& section : sections) {
      FUZZ_CHECK(section.byte_offset > previous &&
                 section.byte_offset <= static_cast<int64_t>(text.size()));
      // Each piece between section starts is valid UTF-8 on its own (tokenized alone).
      if (previous >= 0) {
        FUZZ_CHECK(tome::engine::IsValidUtf8(
            absl::string_view(text).substr(previous, section.byte_offset - previous)));
      }
      previous = section.byte_offset;
    }
  }
  return 0;
}
