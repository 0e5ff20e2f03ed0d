// Starts the real tomed binary on a loopback port, ingests through the tome CLI, asks,
// restarts the server and asks again: the answer must be identical and the document must
// not be prefilled again.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testutil/process.h"
#include "tests/testutil/temp_dir.h"
#include "tome/services/bearer_interceptor.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"

namespace tome {
namespace {

using testing::ChildProcess;

class TomedProcessTest : public ::testing::Test {
 protected:
  void Start() {
    const std::string port_file = dir_.Sub("port");
    std::remove(port_file.c_str());
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{TOMED_BINARY, "--listen=127.0.0.1:0",
                                 "--data_dir=" + dir_.Sub("data"), "--model=" TOME_MODEL_DIR,
                                 "--port_file=" + port_file, "--checkpoint_tokens=512",
                                 "--metrics_listen="},
        dir_.Sub("tomed.log"));
    port_ = testing::WaitForPortFile(port_file, 60);
    ASSERT_GT(port_, 0) << "tomed did not start; see " << dir_.Sub("tomed.log");
    address_ = absl::StrCat("127.0.0.1:", port_);
    const std::string key = services::ReadCredential(
        dir_.Sub("data") + "/bootstrap-credentials", "TOME_API_KEY");
    ASSERT_FALSE(key.empty()) << "tomed wrote no bootstrap credentials";
    setenv("TOME_API_KEY", key.c_str(), 1);  // for the tome CLI children
    auto channel = services::AuthenticatedChannel(address_, key);
    queries_ = v1::QueryService::NewStub(channel);
    documents_ = v1::DocumentService::NewStub(channel);
  }

  int Cli(std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), {TOME_CLI_BINARY, "--server=" + address_});
    return testing::RunCommand(args, out);
  }

  v1::AskSummary AskJson(const std::string& id, const std::string& question) {
    grpc::ClientContext context;
    v1::AskRequest request;
    request.set_document_id(id);
    request.set_question(question);
    request.set_max_tokens(24);
    auto reader = queries_->Ask(&context, request);
    v1::AskResponse response;
    v1::AskSummary summary;
    while (reader->Read(&response)) {
      if (response.has_summary()) summary = response.summary();
    }
    EXPECT_TRUE(reader->Finish().ok());
    return summary;
  }

  testing::TempDir dir_;
  std::unique_ptr<ChildProcess> server_;
  int port_ = 0;
  std::string address_;
  std::unique_ptr<v1::QueryService::Stub> queries_;
  std::unique_ptr<v1::DocumentService::Stub> documents_;
};

// Thread counts out of range stop tomed at start-up, naming the flag.
TEST_F(TomedProcessTest, OutOfRangeThreadCountsAreRefusedAtStartUp) {
  for (const std::string flag : {"--fetch_threads=65", "--store_read_threads=-1"}) {
    const std::string log = dir_.Sub("refused.log");
    ChildProcess refused({TOMED_BINARY, "--listen=127.0.0.1:0", "--data_dir=" + dir_.Sub("data"),
                          "--model=" TOME_MODEL_DIR, "--metrics_listen=", flag},
                         log);
    for (int i = 0; i < 600 && refused.running(); ++i) usleep(100000);
    EXPECT_FALSE(refused.running()) << flag;
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(absl::StrContains(text, flag.substr(0, flag.find('=')) + " must be 0..64"))
        << flag << ": " << text;
  }
}

TEST_F(TomedProcessTest, AnswersSurviveARestartWithoutPrefill) {
  Start();
  const std::string book = dir_.Sub("book.txt");
  {
    std::ofstream out(book);
    for (int i = 0; i < 60; ++i) out << "Chapter " << i << ". The lighthouse keeper counted ships.\n";
  }
  std::string out;
  ASSERT_EQ(Cli({"ingest", book, "--name=lighthouse"}, &out), 0) << out;
  ASSERT_TRUE(absl::StrContains(out, "status: ready")) << out;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(out, match, std::regex("document ([0-9]+)"))) << out;
  const std::string id = match[1];
  ASSERT_EQ(Cli({"ask", id, "Who counted ships?", "--max_tokens=24"}, &out), 0) << out;
  ASSERT_TRUE(absl::StrContains(out, "state from memory")) << out;

  const v1::AskSummary before = AskJson(id, "Who counted ships?");
  EXPECT_EQ(before.state_source(), "memory");

  EXPECT_EQ(server_->Stop(SIGTERM), 0) << "tomed did not shut down cleanly";
  Start();
  const v1::AskSummary after = AskJson(id, "Who counted ships?");
  EXPECT_EQ(after.answer(), before.answer());
  EXPECT_EQ(after.state_source(), "store");
  EXPECT_EQ(after.document_prefill_tokens(), 0);
  EXPECT_EQ(after.document_tokens(), before.document_tokens());

  // The CLI shows the same document after the restart.
  ASSERT_EQ(Cli({"list"}, &out), 0);
  EXPECT_TRUE(absl::StrContains(out, "lighthouse")) << out;
  ASSERT_EQ(Cli({"--json", "get", id}, &out), 0);
  EXPECT_TRUE(absl::StrContains(out, "DOCUMENT_STATUS_READY")) << out;
}

TEST_F(TomedProcessTest, BadRequestsLeaveTheServerWorking) {
  Start();
  std::string out;
  EXPECT_EQ(Cli({"ask", "424242", "anything"}, &out), 1);
  EXPECT_EQ(Cli({"get", "not-a-number"}, &out), 1);
  const std::string empty = dir_.Sub("empty.txt");
  std::ofstream(empty).close();
  EXPECT_EQ(Cli({"ingest", empty}, &out), 1);
  const std::string bad = dir_.Sub("bad.txt");
  std::ofstream(bad) << "caf\xe9";  // Latin-1, not UTF-8
  EXPECT_EQ(Cli({"ingest", bad}, &out), 1);
  ASSERT_TRUE(server_->running());
  ASSERT_EQ(Cli({"health"}, &out), 0);
  EXPECT_EQ(out, "SERVING\n");
}

}  // namespace
}  // namespace tome
