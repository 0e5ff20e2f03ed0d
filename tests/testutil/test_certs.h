// A throwaway PKI for TLS tests, made with OpenSSL at run time (nothing checked in): a CA,
// a server certificate for localhost / 127.0.0.1, a client certificate from the same CA and
// one from an unrelated CA. EC P-256 keys, valid for a day.
#pragma once

#include <string>

namespace tome::testing {

struct TestPki {
  std::string ca_cert;  // PEM, each field
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string stranger_ca_cert;  // another CA, and a client certificate it signed
  std::string stranger_cert, stranger_key;
};

TestPki MakeTestPki();

// Writes `pki` as ca.pem, server.pem, server.key, client.pem, client.key, stranger.pem,
// stranger.key into `dir`.
void WriteTestPki(const TestPki& pki, const std::string& dir);

}  // namespace tome::testing
