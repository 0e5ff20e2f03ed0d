#pragma once

#include "tome/v1/query.grpc.pb.h"
#include "tome_core.h"

namespace tome::services {

class QueryServiceImpl final : public v1::QueryService::CallbackService {
 public:
  explicit QueryServiceImpl(TomeCore* core) : core_(core) {}

  grpc::ServerWriteReactor<v1::AskResponse>* Ask(grpc::CallbackServerContext* context,
                                                 const v1::AskRequest* request) override;

 private:
  TomeCore* core_;
};

}  // namespace tome::services
