// The inputs behind every bug the fuzz targets (tests/fuzz/*_fuzz.cc) found or were written
// to catch, fed to the fixed code: each must now give a clean error. docs/RELIABILITY.md
// lists them with how they were found.
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "auth/tenants.h"
#include "document_codec.h"
#include "gtest/gtest.h"
#include "session_record.h"
#include "tests/testutil/temp_dir.h"
#include "tome/engine/config.h"
#include "tome/engine/safetensors.h"

namespace tome {
namespace {

// document_record_fuzz: a version's created_micros of 1.7e29 is a JSON float; reading it
// with nlohmann's get<int64_t>() was a float-to-int conversion out of range (undefined
// behaviour, UBSan). Now every integer field must be a JSON integer that fits.
TEST(FuzzRegressionTest, DocumentRecordNumbersMustBeIntegersThatFit) {
  const std::string base =
      R"({"format":1,"tenant":1,"id":1,"name":"b","created_micros":1,"updated_micros":1,)"
      R"("version":1,"text_bytes":5,"num_tokens":5,"state_tokens":5,"status":"ready",)"
      R"("error":"",)";
  ASSERT_TRUE(storage::DecodeDocument(base + R"("versions":[[1,5,5,1]]})", 1, 1).ok());
  for (const std::string& versions :
       {R"("versions":[[1,1000,4096,170000000713226315987390875120]]})",  // the crash input
        R"("versions":[[1,5,5,2.5]]})", R"("versions":[[1,5,5,18446744073709551615]]})",
        R"("versions":[[1,5,5,"1"]]})", R"("versions":[1]})", R"("checkpoints":[1e300]})",
        R"("shared_with":[-1]})"}) {
    const auto record = storage::DecodeDocument(base + versions, 1, 1);
    EXPECT_EQ(record.status().code(), absl::StatusCode::kDataLoss) << versions;
  }
  // Counts that cannot be: negative, or more state than tokens.
  std::string bad = base + R"("versions":[]})";
  bad.replace(bad.find(R"("state_tokens":5)"), 16, R"("state_tokens":9)");
  EXPECT_EQ(storage::DecodeDocument(bad, 1, 1).status().code(), absl::StatusCode::kDataLoss);
  std::string section;
  int64_t begin = 0;
  EXPECT_EQ(storage::DecodeSection(R"({"name":"s","begin_byte":18446744073709551615})",
                                   &section, &begin)
                .code(),
            absl::StatusCode::kDataLoss);
}

// service_records_fuzz: session, tenant and API key records were read with json::value()
// and get<>(), which throw json::type_error for a field of another type; nothing caught
// it, so one damaged record terminated the server (ListSessions, the session collector,
// authentication). A negative tail_tokens made std::vector::resize throw length_error.
TEST(FuzzRegressionTest, DamagedServiceRecordsAreDataLossNotACrash) {
  int64_t tail = 0;
  for (const char* record :
       {R"({"document":1,"tenant":"x"})", R"({"document":1,"tail_tokens":-1})",
        R"({"document":1,"tail_tokens":1e300})", R"({"document":1,"turns":-3})",
        R"({"document":1,"parent":7})", R"({"document":"1"})", R"([1,2])", "\xff"}) {
    EXPECT_EQ(services::DecodeSessionRecord("s1", record, &tail).status().code(),
              absl::StatusCode::kDataLoss)
        << record;
  }
  EXPECT_EQ(services::DecodeSessionTail("abcd", 2).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(services::DecodeSessionTail("abcd", -1).status().code(),
            absl::StatusCode::kDataLoss);
  for (const char* record :
       {R"({"id":"1","name":"x"})", R"({"id":1,"name":7})", R"({"id":-1,"name":"x"})",
        R"({"id":1,"name":"x","quotas":{"max_documents":1e300}})",
        R"({"id":1,"name":"x","quotas":[]})",
        R"({"id":1,"name":"x","quotas":{"max_concurrent_requests":4294967296}})"}) {
    EXPECT_EQ(services::DecodeTenantRecord(record).status().code(), absl::StatusCode::kDataLoss)
        << record;
  }
  for (const char* record : {R"({"key_id":5,"tenant":1})", R"({"key_id":"k","tenant":1.5})",
                             R"({"key_id":"k","tenant":1,"revoked":"no"})"}) {
    EXPECT_EQ(services::DecodeApiKeyRecord(record).status().code(), absl::StatusCode::kDataLoss)
        << record;
  }
}

// A session TTL near INT64_MAX (settable through SetQuotas) overflowed
// last_used + ttl * 1e6 (signed overflow, undefined behaviour) in every expiry check.
TEST(FuzzRegressionTest, SessionExpiryCannotOverflow) {
  services::SessionInfo s;
  s.last_used_micros = int64_t{1} << 62;
  s.ttl_seconds = INT64_MAX;
  EXPECT_GT(s.expire_micros(), s.last_used_micros);
  services::Quotas quotas;
  quotas.session_ttl_seconds = INT64_MAX;
  EXPECT_EQ(services::ValidateQuotas(quotas).code(), absl::StatusCode::kInvalidArgument);
  quotas.session_ttl_seconds = 3600;
  EXPECT_TRUE(services::ValidateQuotas(quotas).ok());
}

// safetensors_fuzz (the 10-minute run of 2026-11-28): a checkpoint with an F32 tensor of
// shape [0] made ToFloat32 call memcpy with null pointers (undefined behaviour, UBSan) when
// the caller's buffer for zero elements was empty. Empty tensors now convert to nothing.
TEST(FuzzRegressionTest, EmptySafetensorsTensorConvertsToNothing) {
  const std::string header =
      R"({"empty":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
      R"("one":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  file += header;
  file += std::string("\x80\x3f", 2);  // bf16 1.0
  testing::TempDir dir;
  const std::string path = dir.path() + "/model.safetensors";
  std::ofstream(path, std::ios::binary) << file;
  auto checkpoint = engine::SafetensorsCheckpoint::OpenFile(path);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const engine::TensorInfo* empty = (*checkpoint)->Find("empty").value();
  EXPECT_EQ(empty->num_elements(), 0);
  std::vector<float> none;
  engine::SafetensorsCheckpoint::ToFloat32(*empty, none.data());  // null out: nothing written
  std::vector<float> one(1);
  engine::SafetensorsCheckpoint::ToFloat32(*(*checkpoint)->Find("one").value(), one.data());
  EXPECT_EQ(one[0], 1.0f);
}

// config_fuzz: a config with hidden_size 2^62 validated, and the parameter count the
// server logs at startup overflowed int64 (UBSan); so did 4 * kernel_size in Validate
// itself for a huge sparse_config.kernel_size. Sizes now have upper bounds.
TEST(FuzzRegressionTest, ConfigSizesAreBounded) {
  const std::string tiny = engine::ModelConfig::FromJson(R"({
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
    "mixer_types": ["minicpm4", "lightning-attn"],
    "sparse_config": {"kernel_size": 32, "kernel_stride": 16, "init_blocks": 1,
                      "block_size": 64, "window_size": 128, "topk": 4}})")
                               .value()
                               .ToJson();
  auto with = [&](const std::string& key, const std::string& value) {
    std::string text = tiny;
    const size_t at = text.find("\"" + key + "\": ");
    EXPECT_NE(at, std::string::npos) << key;
    const size_t begin = at + key.size() + 4;
    text.replace(begin, text.find_first_of(",\n}", begin) - begin, value);
    return engine::ModelConfig::FromJson(text).status();
  };
  EXPECT_TRUE(with("hidden_size", "64").ok());
  for (const auto& [key, value] :
       {std::pair<std::string, std::string>{"hidden_size", "4611686018427387904"},
        {"head_dim", "1152921504606846976"},
        {"intermediate_size", "4611686018427387904"},
        {"vocab_size", "4611686018427387904"},
        {"kernel_size", "4611686018427387904"},
        {"block_size", "2305843009213693952"},
        {"topk", "9223372036854775807"}}) {
    const absl::Status status = with(key, value);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << key << ": " << status;
  }
}

}  // namespace
}  // namespace tome
