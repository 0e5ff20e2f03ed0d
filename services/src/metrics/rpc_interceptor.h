// Counts every RPC by method and status code and times it (Prometheus metrics).
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "metrics/metrics.h"

namespace tome::services {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewRpcMetricsInterceptor(
    Metrics* metrics);

}  // namespace tome::services
