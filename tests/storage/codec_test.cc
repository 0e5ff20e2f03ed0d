// The value envelope of state records and the JSON of document records.
#include <string>

#include "document_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "value_codec.h"

namespace tome::storage {
namespace {

using ::testing::HasSubstr;

std::string Payload(size_t size) {
  std::string payload(size, '\0');
  for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>(i * 131 + 7);
  return payload;
}

TEST(ValueCodecTest, RoundTrips) {
  const Fingerprint fp = HashFingerprint("model-a");
  for (size_t size : {size_t{0}, size_t{1}, size_t{100}, size_t{1} << 20}) {
    const std::string payload = Payload(size);
    const std::string value = EncodeStateValue(fp, payload);
    ASSERT_EQ(value.size(), kStateValueHeaderSize + size);
    EXPECT_EQ(static_cast<uint8_t>(value[0]), kStateValueFormat);
    absl::StatusOr<absl::string_view> decoded = DecodeStateValue(value, fp);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, payload);
  }
}

TEST(ValueCodecTest, EveryFlippedByteIsDataLoss) {
  const Fingerprint fp = HashFingerprint("model-a");
  const std::string value = EncodeStateValue(fp, Payload(64));
  for (size_t i = 0; i < value.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80}) {
      std::string bad = value;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      absl::StatusOr<absl::string_view> decoded = DecodeStateValue(bad, fp);
      ASSERT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss) << "byte " << i;
      EXPECT_THAT(decoded.status().message(), HasSubstr("corrupt"));
      EXPECT_THAT(decoded.status().message(), HasSubstr("re-ingest"));
    }
  }
}

TEST(ValueCodecTest, ShortValuesAreDataLoss) {
  const Fingerprint fp = HashFingerprint("model-a");
  const std::string value = EncodeStateValue(fp, Payload(10));
  for (size_t size : {size_t{0}, size_t{1}, kStateValueHeaderSize - 1}) {
    EXPECT_EQ(DecodeStateValue(value.substr(0, size), fp).status().code(),
              absl::StatusCode::kDataLoss);
  }
  // Losing payload bytes breaks the checksum.
  EXPECT_EQ(DecodeStateValue(value.substr(0, value.size() - 1), fp).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(ValueCodecTest, AnotherModelIsFailedPrecondition) {
  const std::string value = EncodeStateValue(HashFingerprint("model-a"), Payload(32));
  absl::StatusOr<absl::string_view> decoded = DecodeStateValue(value, HashFingerprint("model-b"));
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(decoded.status().message(), HasSubstr("different model"));
  EXPECT_THAT(decoded.status().message(), HasSubstr("recomputed"));
}

TEST(ValueCodecTest, FingerprintHashTakesAnyLength) {
  const std::string long_a(10000, 'a');
  std::string long_b = long_a;
  long_b.back() = 'b';
  EXPECT_NE(HashFingerprint(long_a), HashFingerprint(long_b));
  EXPECT_NE(HashFingerprint("x"), HashFingerprint("y"));
  EXPECT_EQ(HashFingerprint(long_a), HashFingerprint(std::string(10000, 'a')));
  EXPECT_EQ(FingerprintHex(HashFingerprint("x")).size(), 2 * kFingerprintSize);
}

DocumentRecord SampleRecord() {
  DocumentRecord record;
  record.tenant = 3;
  record.id = 42;
  record.name = "livre \xc3\xa9t\xc3\xa9.txt";
  record.created_micros = 1700000000000000;
  record.updated_micros = 1700000000000001;
  record.version = 2;
  record.text_bytes = 5000;
  record.num_tokens = 1300;
  record.state_tokens = 1024;
  record.status = DocumentStatus::kFailed;
  record.error = "out of memory";
  return record;
}

TEST(DocumentCodecTest, RoundTripsAsVersionedJson) {
  const DocumentRecord record = SampleRecord();
  absl::StatusOr<std::string> encoded = EncodeDocument(record);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  const nlohmann::json j = nlohmann::json::parse(*encoded);
  EXPECT_EQ(j.at("format"), 1);
  EXPECT_EQ(j.at("status"), "failed");
  absl::StatusOr<DocumentRecord> decoded = DecodeDocument(*encoded, 3, 42);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->tenant, record.tenant);
  EXPECT_EQ(decoded->id, record.id);
  EXPECT_EQ(decoded->name, record.name);
  EXPECT_EQ(decoded->created_micros, record.created_micros);
  EXPECT_EQ(decoded->updated_micros, record.updated_micros);
  EXPECT_EQ(decoded->version, record.version);
  EXPECT_EQ(decoded->text_bytes, record.text_bytes);
  EXPECT_EQ(decoded->num_tokens, record.num_tokens);
  EXPECT_EQ(decoded->state_tokens, record.state_tokens);
  EXPECT_EQ(decoded->status, record.status);
  EXPECT_EQ(decoded->error, record.error);
}

TEST(DocumentCodecTest, RejectsDamagedAndForeignRecords) {
  const std::string encoded = *EncodeDocument(SampleRecord());
  EXPECT_EQ(DecodeDocument("not json", 3, 42).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeDocument(encoded.substr(0, encoded.size() / 2), 3, 42).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeDocument(R"({"format":1})", 3, 42).status().code(), absl::StatusCode::kDataLoss);
  // Stored under another document's key.
  EXPECT_EQ(DecodeDocument(encoded, 3, 43).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeDocument(encoded, 4, 42).status().code(), absl::StatusCode::kDataLoss);

  nlohmann::json j = nlohmann::json::parse(encoded);
  j["status"] = "sleeping";
  EXPECT_EQ(DecodeDocument(j.dump(), 3, 42).status().code(), absl::StatusCode::kDataLoss);
  j = nlohmann::json::parse(encoded);
  j["format"] = 2;
  EXPECT_EQ(DecodeDocument(j.dump(), 3, 42).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(DocumentCodecTest, NamesMustBeUtf8ErrorsAreSanitized) {
  DocumentRecord record = SampleRecord();
  record.name = "bad\xff";
  EXPECT_EQ(EncodeDocument(record).status().code(), absl::StatusCode::kInvalidArgument);
  record = SampleRecord();
  record.error = "bad\xff byte";
  absl::StatusOr<std::string> encoded = EncodeDocument(record);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(DecodeDocument(*encoded, 3, 42)->error, "bad\xef\xbf\xbd byte");
}

TEST(Utf8Test, ValidatesAndSanitizes) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_FALSE(IsValidUtf8("\xc3"));                                   // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));                               // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));                           // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));                       // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_EQ(SanitizeUtf8("a\xc3z\xc3\xa9"), "a\xef\xbf\xbdz\xc3\xa9");
}

}  // namespace
}  // namespace tome::storage
