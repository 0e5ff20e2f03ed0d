// The Prometheus endpoint: scraped over HTTP after some traffic.
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/testutil/http_get.h"
#include "tests/testutil/server_fixture.h"

namespace tome {
namespace {

using testing::HttpGet;

// The value of `series` (name and labels as rendered) on a metrics page, or -1.
double Value(const std::string& page, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    double value = -1;
    if (absl::ConsumePrefix(&line, series + " ") && absl::SimpleAtod(line, &value)) return value;
  }
  return -1;
}

// This process's VmRSS in bytes (the server under test runs in it).
double VmRssBytes() {
  std::ifstream in("/proc/self/status");
  std::string key;
  double kib = -1;
  while (in >> key) {
    if (key == "VmRSS:" && in >> kib) return kib * 1024;
  }
  return -1;
}

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

TEST_F(MetricsTest, ReportsTheServersMemory) {
  Ingest(std::string(700, 'r'));
  const std::string body = HttpGet(server_->metrics_port(), "/metrics");
  const double rss = Value(body, "tome_process_resident_bytes");
  const double vm_rss = VmRssBytes();
  ASSERT_GT(vm_rss, 0);
  // The same quantity read moments apart: equal up to what the scrape itself allocates.
  EXPECT_GT(rss, 0.5 * vm_rss) << body;
  EXPECT_LT(rss, 2.0 * vm_rss) << body;
#ifdef TOME_WITH_JEMALLOC
  const double allocated = Value(body, "tome_allocator_bytes{kind=\"allocated\"}");
  const double active = Value(body, "tome_allocator_bytes{kind=\"active\"}");
  const double resident = Value(body, "tome_allocator_bytes{kind=\"resident\"}");
  EXPECT_GT(allocated, 1 << 20) << body;  // at least the model and the server's tables
  EXPECT_LE(allocated, active);
  EXPECT_LE(active, resident);
  EXPECT_LE(resident, rss * 1.5);
#else
  EXPECT_FALSE(absl::StrContains(body, "tome_allocator_bytes")) << body;
#endif
}

}  // namespace
}  // namespace tome
