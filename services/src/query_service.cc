#include "query_service.h"

#include <thread>

#include "absl/time/clock.h"
#include "document_service.h"
#include "status_util.h"
#include "write_reactor.h"

namespace tome::services {

grpc::ServerWriteReactor<v1::AskResponse>* QueryServiceImpl::Ask(
    grpc::CallbackServerContext* context, const v1::AskRequest* request) {
  auto* reactor = new QueuedWriteReactor<v1::AskResponse>();
  auto id = ParseDocumentId(request->document_id());
  if (!id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  AskParams params;
  params.question = request->question();
  params.max_tokens = request->max_tokens();
  params.temperature = request->temperature();
  params.top_p = request->top_p();
  params.seed = request->seed();
  params.version = request->version();
  const auto deadline = context->deadline();
  params.deadline = deadline == std::chrono::system_clock::time_point::max()
                        ? absl::InfiniteFuture()
                        : absl::FromChrono(deadline);
  std::thread([core = core_, reactor, doc = *id, params = std::move(params)] {
    auto cancelled = [&] { return reactor->cancelled() || absl::Now() > params.deadline; };
    auto result = core->Ask(
        doc, params,
        [&](const std::string& text) {
          v1::AskResponse msg;
          msg.mutable_delta()->set_text(text);
          return reactor->Write(std::move(msg));
        },
        cancelled);
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    v1::AskResponse msg;
    v1::AskSummary* s = msg.mutable_summary();
    s->set_answer(result->answer);
    s->set_stop_reason(result->stop_reason);
    s->set_state_source(result->state_source);
    s->set_document_tokens(result->document_tokens);
    s->set_prompt_tokens(result->prompt_tokens);
    s->set_document_prefill_tokens(result->document_prefill_tokens);
    s->set_generated_tokens(result->generated_tokens);
    v1::Timings* t = s->mutable_timings();
    t->set_queue_ms(result->queue_ms);
    t->set_load_state_ms(result->load_state_ms);
    t->set_prefill_ms(result->prefill_ms);
    t->set_first_token_ms(result->first_token_ms);
    t->set_total_ms(result->total_ms);
    t->set_decode_tokens_per_second(result->decode_tokens_per_second);
    reactor->Write(std::move(msg));
    reactor->Finish(grpc::Status::OK);
  }).detach();
  return reactor;
}

}  // namespace tome::services
