// TLS for tomed and its clients: gRPC credentials from PEM files, checked up front so that a
// wrong path or a key that does not match its certificate is a clear startup error rather
// than a server that cannot listen.
//
// Server: a certificate chain and its key; with a client CA, mutual TLS (every client must
// present a certificate signed by that CA, else the handshake fails). Client: the CA that
// signed the server's certificate (or the system roots), and for mutual TLS its own
// certificate and key.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tome::services {

struct ServerTlsOptions {
  std::string cert_file;       // PEM certificate chain; empty = plaintext (no TLS)
  std::string key_file;        // PEM private key of that certificate
  std::string client_ca_file;  // PEM CA certificates: require and verify client certificates
};

// Insecure credentials when options.cert_file is empty. InvalidArgument for a key without a
// certificate (or the reverse), a client CA without a certificate, unreadable files, files
// that are not PEM, or a key that does not match the certificate.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

struct ClientTlsOptions {
  bool enabled = false;     // TLS at all (implied by any file below)
  std::string ca_file;      // PEM CA certificates to verify the server; empty = system roots
  std::string cert_file;    // mutual TLS: this client's certificate chain...
  std::string key_file;     // ...and its key
  std::string server_name;  // name to verify instead of the address's host (tests, IPs)
};

// Insecure credentials unless TLS is enabled. InvalidArgument for a certificate without a
// key (or the reverse), unreadable or non-PEM files, or a key that does not match.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientTlsOptions& options);

// Sets the channel arguments TLS needs (the server name override); no-op without TLS.
void ApplyTlsChannelArgs(const ClientTlsOptions& options, grpc::ChannelArguments* args);

// A channel to `address` with `options`' credentials and arguments.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(
    const std::string& address, const ClientTlsOptions& options,
    grpc::ChannelArguments args = grpc::ChannelArguments(),
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
        interceptors = {});

}  // namespace tome::services
