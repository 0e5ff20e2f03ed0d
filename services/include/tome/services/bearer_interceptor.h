// A gRPC client interceptor that adds `authorization: Bearer <key>` to every call of a
// channel (insecure channels drop call credentials, so this is how an in-process or
// loopback client authenticates).
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>

#include <memory>
#include <string>
#include <vector>

namespace tome::services {

std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
BearerInterceptors(const std::string& key);

// A channel to `address` (insecure) whose calls carry the key.
std::shared_ptr<grpc::Channel> AuthenticatedChannel(const std::string& address,
                                                    const std::string& key);

// Reads KEY=value lines (the format of <data_dir>/bootstrap-credentials); "" if absent.
std::string ReadCredential(const std::string& path, const std::string& name);

}  // namespace tome::services
