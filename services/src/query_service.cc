#include "query_service.h"

#include <thread>

#include "absl/time/clock.h"
#include "auth/call_auth.h"
#include "document_service.h"
#include "status_util.h"
#include "write_reactor.h"

namespace tome::services {

grpc::ServerWriteReactor<v1::AskResponse>* QueryServiceImpl::Ask(
    grpc::CallbackServerContext* context, const v1::AskRequest* request) {
  auto* reactor = new QueuedWriteReactor<v1::AskResponse>();
  auto caller = AuthenticateTenant(*core_, *context);
  if (!caller.ok()) {
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  auto slot = core_->Admit(*caller);
  if (!slot.ok()) {
    reactor->Finish(ToGrpcStatus(slot.status()));
    return reactor;
  }
  AskParams params;
  if (request->session_id().empty()) {
    auto id = ParseDocumentId(request->document_id());
    if (!id.ok()) {
      reactor->Finish(ToGrpcStatus(id.status()));
      return reactor;
    }
    params.document = *id;
  } else if (!request->document_id().empty()) {
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError(
        "give either session_id or document_id, not both")));
    return reactor;
  }
  params.session_id = request->session_id();
  params.question = request->question();
  params.max_tokens = request->max_tokens();
  params.temperature = request->temperature();
  params.top_p = request->top_p();
  params.seed = request->seed();
  params.version = request->version();
  if (request->max_citations() < 0 || request->max_citations() > 20) {
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError("max_citations must be in [0, 20]")));
    return reactor;
  }
  params.max_citations = request->no_citations() ? 0
                         : request->max_citations() > 0 ? request->max_citations()
                                                         : 3;
  const auto deadline = context->deadline();
  params.deadline = deadline == std::chrono::system_clock::time_point::max()
                        ? absl::InfiniteFuture()
                        : absl::FromChrono(deadline);
  std::thread([core = core_, reactor, caller = *caller, slot = std::move(slot).value(),
               params = std::move(params)]() mutable {
    auto cancelled = [&] { return reactor->cancelled() || absl::Now() > params.deadline; };
    auto result = core->Ask(
        caller, params,
        [&](const std::string& text) {
          v1::AskResponse msg;
          msg.mutable_delta()->set_text(text);
          return reactor->Write(std::move(msg));
        },
        cancelled);
    if (!result.ok()) {
      slot.reset();  // before the client can see the end of the call
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
    s->set_session_id(result->session_id);
    s->set_turn(result->turn);
    for (const Citation& c : result->citations) {
      v1::Citation* out = s->add_citations();
      out->set_section(c.section);
      out->set_byte_begin(c.byte_begin);
      out->set_byte_end(c.byte_end);
      out->set_line_begin(c.line_begin);
      out->set_line_end(c.line_end);
      out->set_snippet(c.snippet);
      out->set_weight(c.weight);
    }
    v1::Timings* t = s->mutable_timings();
    t->set_queue_ms(result->queue_ms);
    t->set_load_state_ms(result->load_state_ms);
    t->set_prefill_ms(result->prefill_ms);
    t->set_first_token_ms(result->first_token_ms);
    t->set_total_ms(result->total_ms);
    t->set_decode_tokens_per_second(result->decode_tokens_per_second);
    reactor->Write(std::move(msg));
    slot.reset();  // before the client can see the end of the call
    reactor->Finish(grpc::Status::OK);
  }).detach();
  return reactor;
}

}  // namespace tome::services
