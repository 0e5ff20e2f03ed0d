// The real tomed binary, for what only a process shows: API keys never reach its log (or its
// metrics), and its TLS flags serve TLS and mutual TLS.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testutil/http_get.h"
#include "tests/testutil/process.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_certs.h"
#include "tome/services/bearer_interceptor.h"
#include "tome/services/tls.h"
#include "tome/v1/admin.grpc.pb.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"

namespace tome {
namespace {

using testing::HttpGet;

using testing::ChildProcess;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}


class TomedSecurityTest : public ::testing::Test {
 protected:
  // Starts tomed with `flags` added; returns its port (0 if it did not start).
  int Start(const std::vector<std::string>& flags) {
    const std::string port_file = dir_.Sub("port");
    std::remove(port_file.c_str());
    std::vector<std::string> argv = {TOMED_BINARY, "--listen=127.0.0.1:0",
                                     "--data_dir=" + dir_.Sub("data"), "--model=" TOME_MODEL_DIR,
                                     "--port_file=" + port_file};
    argv.insert(argv.end(), flags.begin(), flags.end());
    server_ = std::make_unique<ChildProcess>(argv, log_);
    const int port = testing::WaitForPortFile(port_file, 60);
    EXPECT_GT(port, 0) << "tomed did not start; see " << log_;
    return port;
  }
  std::string Credential(const std::string& name) {
    return services::ReadCredential(dir_.Sub("data") + "/bootstrap-credentials", name);
  }

  testing::TempDir dir_;
  const std::string log_ = dir_.Sub("tomed.log");
  std::unique_ptr<ChildProcess> server_;
};

TEST_F(TomedSecurityTest, ApiKeysNeverReachTheLogOrTheMetrics) {
  // gRPC's own logging at its most verbose (without tracers, which dump raw frames and are
  // for debugging only: docs/RELIABILITY.md).
  setenv("GRPC_VERBOSITY", "DEBUG", 1);
  const int port = Start({"--metrics_listen=127.0.0.1:0"});
  unsetenv("GRPC_VERBOSITY");
  ASSERT_GT(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  const std::string api_key = Credential("TOME_API_KEY");
  const std::string admin_key = Credential("TOME_ADMIN_KEY");
  ASSERT_FALSE(api_key.empty());
  ASSERT_FALSE(admin_key.empty());
  std::vector<std::string> secrets = {api_key, admin_key};

  // Traffic with every kind of key: good, wrong, new, revoked.
  auto documents = v1::DocumentService::NewStub(services::AuthenticatedChannel(address, api_key));
  auto queries = v1::QueryService::NewStub(services::AuthenticatedChannel(address, api_key));
  std::string id;
  {
    grpc::ClientContext context;
    v1::CreateDocumentRequest request;
    request.set_name("secret-free");
    v1::Document document;
    ASSERT_TRUE(documents->CreateDocument(&context, request, &document).ok());
    id = document.id();
    grpc::ClientContext append_context;
    v1::AppendTextResponse response;
    auto writer = documents->AppendText(&append_context, &response);
    v1::AppendTextRequest piece;
    piece.set_document_id(id);
    piece.set_text("Keys are secrets; logs are not.");
    writer->Write(piece);
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
    grpc::ClientContext ask_context;
    v1::AskRequest ask;
    ask.set_document_id(id);
    ask.set_question("What are keys?");
    ask.set_max_tokens(8);
    auto reader = queries->Ask(&ask_context, ask);
    v1::AskResponse answer;
    while (reader->Read(&answer)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
  }
  const std::string wrong_key = "tome_0123456789abcdef0123456789abcdef0123456789abcdef";
  secrets.push_back(wrong_key);
  {
    auto stub = v1::DocumentService::NewStub(services::AuthenticatedChannel(address, wrong_key));
    grpc::ClientContext context;
    v1::GetDocumentRequest request;
    request.set_document_id(id);
    v1::Document document;
    const grpc::Status status = stub->GetDocument(&context, request, &document);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_FALSE(absl::StrContains(status.error_message(), wrong_key));  // not echoed either
  }
  auto admin = v1::AdminService::NewStub(services::AuthenticatedChannel(address, admin_key));
  v1::ApiKey created;
  {
    grpc::ClientContext context;
    v1::CreateApiKeyRequest request;
    request.set_tenant_id("1");
    request.set_name("short-lived");
    ASSERT_TRUE(admin->CreateApiKey(&context, request, &created).ok());
    secrets.push_back(created.secret());
    auto stub =
        v1::DocumentService::NewStub(services::AuthenticatedChannel(address, created.secret()));
    grpc::ClientContext get_context;
    v1::GetDocumentRequest get;
    get.set_document_id(id);
    v1::Document document;
    EXPECT_TRUE(stub->GetDocument(&get_context, get, &document).ok());
    grpc::ClientContext revoke_context;
    v1::RevokeApiKeyRequest revoke;
    revoke.set_key_id(created.key_id());
    v1::RevokeApiKeyResponse revoked;
    ASSERT_TRUE(admin->RevokeApiKey(&revoke_context, revoke, &revoked).ok());
    grpc::ClientContext again_context;
    EXPECT_EQ(stub->GetDocument(&again_context, get, &document).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }

  // The metrics endpoint, found in the log.
  std::smatch match;
  const std::string startup_log = ReadFile(log_);
  ASSERT_TRUE(std::regex_search(startup_log, match, std::regex(R"(metrics on http://[0-9.]+:([0-9]+))")))
      << startup_log;
  const std::string metrics = HttpGet(std::stoi(match[1]), "/metrics");
  EXPECT_TRUE(absl::StrContains(metrics, "tome_requests_total")) << metrics;

  EXPECT_EQ(server_->Stop(SIGTERM), 0);
  const std::string log = ReadFile(log_);
  ASSERT_FALSE(log.empty());
  for (const std::string& secret : secrets) {
    // Neither the key nor a recognisable part of it.
    for (const std::string& part : {secret, secret.substr(5, 16), secret.substr(secret.size() - 16)}) {
      EXPECT_FALSE(absl::StrContains(log, part)) << "the log shows (part of) a key: " << part;
      EXPECT_FALSE(absl::StrContains(metrics, part)) << "the metrics show (part of) a key";
    }
  }
  EXPECT_FALSE(absl::StrContains(absl::AsciiStrToLower(log), "bearer")) << log;
}

TEST_F(TomedSecurityTest, ServesMutualTlsFromItsFlags) {
  const std::string pki = dir_.Sub("pki");
  ASSERT_EQ(mkdir(pki.c_str(), 0700), 0);
  testing::WriteTestPki(testing::MakeTestPki(), pki);
  const int port = Start({"--metrics_listen=", "--tls_cert=" + pki + "/server.pem",
                          "--tls_key=" + pki + "/server.key", "--tls_client_ca=" + pki + "/ca.pem"});
  ASSERT_GT(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  const std::string api_key = Credential("TOME_API_KEY");
  auto create = [&](std::shared_ptr<grpc::Channel> channel) {
    auto stub = v1::DocumentService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CreateDocumentRequest request;
    request.set_name("over TLS");
    v1::Document document;
    return stub->CreateDocument(&context, request, &document);
  };
  services::ClientTlsOptions tls;
  tls.ca_file = pki + "/ca.pem";
  tls.cert_file = pki + "/client.pem";
  tls.key_file = pki + "/client.key";
  auto channel = services::NewChannel(address, tls, grpc::ChannelArguments(),
                                      services::BearerInterceptors(api_key));
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_TRUE(create(*channel).ok());
  // The tome CLI speaks mutual TLS from its flags, and is refused without its certificate.
  const std::vector<std::string> cli = {TOME_CLI_BINARY, "--server=" + address,
                                        "--api_key=" + api_key, "--timeout=20",
                                        "--tls_ca=" + pki + "/ca.pem"};
  std::vector<std::string> with_cert = cli;
  with_cert.insert(with_cert.end(), {"--tls_cert=" + pki + "/client.pem",
                                     "--tls_key=" + pki + "/client.key", "list"});
  std::string out;
  EXPECT_EQ(testing::RunCommand(with_cert, &out), 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "over TLS")) << out;
  std::vector<std::string> without_cert = cli;
  without_cert.push_back("list");
  EXPECT_NE(testing::RunCommand(without_cert, &out), 0) << out;
  // Plaintext, and TLS without a client certificate, are refused.
  EXPECT_FALSE(create(services::AuthenticatedChannel(address, api_key)).ok());
  services::ClientTlsOptions anonymous;
  anonymous.ca_file = pki + "/ca.pem";
  auto anonymous_channel = services::NewChannel(address, anonymous, grpc::ChannelArguments(),
                                                services::BearerInterceptors(api_key));
  ASSERT_TRUE(anonymous_channel.ok());
  EXPECT_FALSE(create(*anonymous_channel).ok());
  EXPECT_EQ(server_->Stop(SIGTERM), 0);
  EXPECT_TRUE(absl::StrContains(ReadFile(log_), "(mutual TLS)"));

  // A key that does not match its certificate: tomed refuses to start, saying why.
  ChildProcess bad({TOMED_BINARY, "--listen=127.0.0.1:0", "--data_dir=" + dir_.Sub("data"),
                    "--model=" TOME_MODEL_DIR, "--metrics_listen=",
                    "--tls_cert=" + pki + "/server.pem", "--tls_key=" + pki + "/client.key"},
                   dir_.Sub("bad.log"));
  for (int i = 0; i < 600 && bad.running(); ++i) usleep(100000);
  EXPECT_FALSE(bad.running());
  EXPECT_TRUE(absl::StrContains(ReadFile(dir_.Sub("bad.log")), "does not match"))
      << ReadFile(dir_.Sub("bad.log"));
}

}  // namespace
}  // namespace tome
