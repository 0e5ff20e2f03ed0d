// TLS and mutual TLS on tomed's gRPC port, with a PKI made for the test (test_certs.h):
// TLS clients get through, plaintext and untrusted clients do not, and a bad TLS
// configuration is a clear error at startup.
#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"
#include "tests/testutil/test_certs.h"
#include "tome/services/tls.h"

namespace tome {
namespace {

using services::ClientTlsOptions;

class TlsTest : public testing::ServerTest {
 protected:
  void SetUp() override {
    model_dir_ = dir_.Sub("model");
    testing::WriteModel(testing::TinyConfig(), model_dir_, 3);
    pki_dir_ = dir_.path();
    testing::WriteTestPki(testing::MakeTestPki(), pki_dir_);
  }

  std::string Pki(const std::string& name) { return pki_dir_ + "/" + name; }

  services::ServerOptions TlsOptions(bool mutual) {
    services::ServerOptions options = Options();
    options.tls_cert_file = Pki("server.pem");
    options.tls_key_file = Pki("server.key");
    if (mutual) options.tls_client_ca_file = Pki("ca.pem");
    return options;
  }

  // CreateDocument over a network channel to the server with `tls` (and the API key unless
  // `with_key` is false).
  grpc::Status CreateOver(const ClientTlsOptions& tls, bool with_key = true) {
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> auth;
    if (with_key) auth = services::BearerInterceptors(api_key_);
    auto channel = services::NewChannel(absl::StrCat("127.0.0.1:", server_->port()), tls,
                                        grpc::ChannelArguments(), std::move(auth));
    EXPECT_TRUE(channel.ok()) << channel.status();
    if (!channel.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "no channel");
    auto stub = v1::DocumentService::NewStub(*channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CreateDocumentRequest request;
    request.set_name("over the wire");
    v1::Document document;
    return stub->CreateDocument(&context, request, &document);
  }

  ClientTlsOptions Trusting() {
    ClientTlsOptions tls;
    tls.ca_file = Pki("ca.pem");
    return tls;
  }

  std::string pki_dir_;
};

bool Refused(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

TEST_F(TlsTest, TlsClientsGetThroughAndPlaintextIsRefused) {
  StartServer(TlsOptions(/*mutual=*/false));
  EXPECT_TRUE(CreateOver(Trusting()).ok());
  // The same by name (the certificate names localhost and 127.0.0.1).
  ClientTlsOptions by_name = Trusting();
  by_name.server_name = "localhost";
  EXPECT_TRUE(CreateOver(by_name).ok());

  // Plaintext to a TLS port: the handshake never completes.
  const grpc::Status plaintext = CreateOver(ClientTlsOptions{});
  EXPECT_TRUE(Refused(plaintext)) << plaintext.error_code() << " " << plaintext.error_message();
  // A client that trusts another CA does not accept the server.
  ClientTlsOptions stranger;
  stranger.ca_file = Pki("stranger.pem");
  const grpc::Status untrusted = CreateOver(stranger);
  EXPECT_TRUE(Refused(untrusted)) << untrusted.error_message();
  // A certificate for another name does not pass either.
  ClientTlsOptions wrong_name = Trusting();
  wrong_name.server_name = "tome.example.com";
  EXPECT_TRUE(Refused(CreateOver(wrong_name)));
  // TLS does not replace the API key.
  EXPECT_EQ(CreateOver(Trusting(), /*with_key=*/false).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  StartServer(TlsOptions(/*mutual=*/true));
  // No client certificate: refused in the handshake.
  const grpc::Status anonymous = CreateOver(Trusting());
  EXPECT_TRUE(Refused(anonymous)) << anonymous.error_code() << " " << anonymous.error_message();
  // A certificate from another CA: refused.
  ClientTlsOptions stranger = Trusting();
  stranger.cert_file = Pki("stranger.pem");
  stranger.key_file = Pki("stranger.key");
  EXPECT_TRUE(Refused(CreateOver(stranger)));
  // The CA's client certificate: admitted, and the API key is still checked.
  ClientTlsOptions client = Trusting();
  client.cert_file = Pki("client.pem");
  client.key_file = Pki("client.key");
  EXPECT_TRUE(CreateOver(client).ok());
  EXPECT_EQ(CreateOver(client, /*with_key=*/false).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TlsTest, BadTlsConfigurationIsAClearStartupError) {
  auto start = [&](const std::string& cert, const std::string& key, const std::string& ca) {
    services::ServerOptions options = Options();
    options.tls_cert_file = cert;
    options.tls_key_file = key;
    options.tls_client_ca_file = ca;
    return services::TomeServer::Start(options).status();
  };
  absl::Status s = start(Pki("server.pem"), "", "");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "--tls_key")) << s;
  s = start("", Pki("server.key"), "");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = start("", "", Pki("ca.pem"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = start(Pki("server.pem"), Pki("client.key"), "");  // another certificate's key
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "does not match")) << s;
  s = start(Pki("missing.pem"), Pki("server.key"), "");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "missing.pem")) << s;
  s = start(Pki("server.pem"), Pki("server.key"), Pki("missing-ca.pem"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // Clients check their side the same way.
  ClientTlsOptions half;
  half.cert_file = Pki("client.pem");
  EXPECT_EQ(services::MakeChannelCredentials(half).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tome
