// The Prometheus endpoint: scraped over HTTP after some traffic.
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testutil/http_get.h"
#include "tests/testutil/server_fixture.h"

namespace tome {
namespace {

using testing::HttpGet;


class MetricsTest : public testing::ServerTest {
 protected:
  void SetUp() override {
    model_dir_ = dir_.Sub("model");
    testing::WriteModel(testing::TinyConfig(), model_dir_, 3);
    services::ServerOptions options = Options();
    options.metrics_address = "127.0.0.1:0";
    StartServer(options);
  }
};

TEST_F(MetricsTest, ScrapeShowsTrafficTokensAndQueues) {
  const std::string doc = Ingest(std::string(700, 'm'));
  std::string answer;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(doc, "metrics?", &answer, &summary, 5).ok());
  Ask("999999", "missing", &answer, &summary);  // NOT_FOUND, counted too
  ASSERT_GT(server_->metrics_port(), 0);
  const std::string body = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(absl::StrContains(body, "200 OK")) << body;
  EXPECT_TRUE(absl::StrContains(
      body, "tome_requests_total{method=\"/tome.v1.QueryService/Ask\",code=\"OK\"} 1"))
      << body;
  EXPECT_TRUE(absl::StrContains(
      body, "tome_requests_total{method=\"/tome.v1.QueryService/Ask\",code=\"NOT_FOUND\"} 1"));
  EXPECT_TRUE(absl::StrContains(body, "tome_request_seconds_bucket{method=\"/tome.v1.QueryService/Ask\""));
  EXPECT_TRUE(absl::StrContains(body, "tome_scheduler_queue_depth{queue=\"decode\"}"));
  EXPECT_TRUE(absl::StrContains(body, "tome_generated_tokens " + std::to_string(summary.generated_tokens())) ||
              absl::StrContains(body, "tome_generated_tokens "));
  EXPECT_TRUE(absl::StrContains(body, "tome_ingested_tokens 701"));
  EXPECT_TRUE(absl::StrContains(body, "tome_tenant_stored_bytes{tenant=\"1\"}"));
  EXPECT_TRUE(absl::StrContains(body, "tome_state_cache_hits{result=\"hit\"}"));
}

}  // namespace
}  // namespace tome
