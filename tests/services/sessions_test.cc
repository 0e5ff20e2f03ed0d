// Sessions over real gRPC: turns, persistence across restarts, fork, TTL; concurrency and
// cancellation of asks.
#include <thread>

#include "absl/synchronization/mutex.h"
#include "auth/usage.h"
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"
#include "tome/v1/admin.grpc.pb.h"
#include "tome/v1/sessions.grpc.pb.h"
#include "tome_core.h"

namespace tome {
namespace {

class SessionsTest : public testing::ServerTest {
 protected:
  std::unique_ptr<v1::SessionService::Stub> sessions() {
    return v1::SessionService::NewStub(channel_);
  }
  v1::Session Create(const std::string& doc) {
    grpc::ClientContext context;
    v1::CreateSessionRequest request;
    request.set_document_id(doc);
    v1::Session session;
    EXPECT_TRUE(sessions()->CreateSession(&context, request, &session).ok());
    return session;
  }
  v1::Session GetSession(const std::string& id, grpc::Status* status = nullptr) {
    grpc::ClientContext context;
    v1::GetSessionRequest request;
    request.set_session_id(id);
    v1::Session session;
    grpc::Status s = sessions()->GetSession(&context, request, &session);
    if (status) *status = s;
    return session;
  }
  v1::AskSummary Turn(const std::string& session, const std::string& question) {
    grpc::ClientContext context;
    v1::AskRequest request;
    request.set_session_id(session);
    request.set_question(question);
    request.set_max_tokens(8);
    auto reader = queries_->Ask(&context, request);
    v1::AskResponse response;
    v1::AskSummary summary;
    while (reader->Read(&response)) {
      if (response.has_summary()) summary = response.summary();
    }
    EXPECT_TRUE(reader->Finish().ok());
    return summary;
  }
};

TEST_F(SessionsTest, TurnsAccumulateAndSurviveARestart) {
  const std::string doc = Ingest(std::string(800, 'd') + " The sessions document.");
  const v1::Session s = Create(doc);
  EXPECT_EQ(s.turns(), 0);
  const v1::AskSummary first = Turn(s.id(), "first question");
  EXPECT_EQ(first.turn(), 1);
  EXPECT_EQ(first.session_id(), s.id());
  const v1::Session after_one = GetSession(s.id());
  EXPECT_EQ(after_one.turns(), 1);
  // Question + answer + the closing EOS.
  EXPECT_EQ(after_one.tail_tokens(), first.prompt_tokens() + first.generated_tokens() + 1);
  const v1::Session fork = [&] {
    grpc::ClientContext context;
    v1::ForkSessionRequest request;
    request.set_session_id(s.id());
    v1::Session out;
    EXPECT_TRUE(sessions()->ForkSession(&context, request, &out).ok());
    return out;
  }();
  EXPECT_EQ(fork.parent_session_id(), s.id());
  EXPECT_EQ(fork.tail_tokens(), after_one.tail_tokens());

  StartServer();  // a fresh process state: sessions come back from the store
  const v1::AskSummary after_restart = Turn(s.id(), "second question");
  EXPECT_EQ(after_restart.turn(), 2);
  EXPECT_EQ(after_restart.state_source(), "store");
  // The fork has the same history: the same second answer.
  const v1::AskSummary on_fork = Turn(fork.id(), "second question");
  EXPECT_EQ(on_fork.answer(), after_restart.answer());
  // And a session that never saw a restart agrees too.
  const v1::Session fresh = Create(doc);
  EXPECT_EQ(Turn(fresh.id(), "first question").answer(), first.answer());
  EXPECT_EQ(Turn(fresh.id(), "second question").answer(), after_restart.answer());
  EXPECT_EQ(GetSession(s.id()).turns(), 2);
  EXPECT_EQ(GetSession(fork.id()).turns(), 2);

  grpc::ClientContext context;
  v1::ListSessionsRequest list;
  list.set_document_id(doc);
  v1::ListSessionsResponse listed;
  ASSERT_TRUE(sessions()->ListSessions(&context, list, &listed).ok());
  EXPECT_EQ(listed.sessions_size(), 3);
}

TEST_F(SessionsTest, SessionsExpireAfterTheirTtl) {
  const std::string doc = Ingest("Short-lived.");
  auto admin = v1::AdminService::NewStub(server_->InProcessChannel(admin_key_));
  grpc::ClientContext context;
  v1::SetQuotasRequest request;
  request.set_tenant_id("1");
  request.mutable_quotas()->set_session_ttl_seconds(1);
  v1::Tenant tenant;
  ASSERT_TRUE(admin->SetQuotas(&context, request, &tenant).ok());
  const v1::Session s = Create(doc);
  grpc::Status status;
  GetSession(s.id(), &status);
  EXPECT_TRUE(status.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  GetSession(s.id(), &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  // Its data is collected.
  EXPECT_GE(server_->core()->CollectExpiredSessions().value(), 1);
}

TEST_F(SessionsTest, ConcurrentAsksGetTheirOwnAnswers) {
  const std::string doc = Ingest(std::string(1500, 'c') + " Many clients ask at once.");
  // Expected answers, one client at a time.
  const std::vector<std::string> questions = {"alpha?", "beta?", "gamma?", "delta?"};
  std::vector<std::string> expected;
  for (const std::string& q : questions) {
    std::string answer;
    v1::AskSummary summary;
    ASSERT_TRUE(Ask(doc, q, &answer, &summary).ok());
    expected.push_back(answer);
  }
  constexpr int kClients = 8;
  std::vector<std::string> got(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      std::string answer;
      v1::AskSummary summary;
      if (Ask(doc, questions[i % questions.size()], &answer, &summary).ok()) got[i] = answer;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(got[i], expected[i % questions.size()]) << i;
}

TEST_F(SessionsTest, CancellingAnAskStopsItsGeneration) {
  const std::string doc = Ingest(std::string(500, 'x'));
  const int64_t before = server_->core()->usage().tokens_last_minute(1);
  grpc::ClientContext context;
  v1::AskRequest request;
  request.set_document_id(doc);
  request.set_question("never ending?");
  request.set_max_tokens(4096);
  auto reader = queries_->Ask(&context, request);
  v1::AskResponse response;
  int deltas = 0;
  while (reader->Read(&response)) {
    if (response.has_delta() && ++deltas == 3) context.TryCancel();
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server stopped generating shortly after: far fewer than 4096 tokens were spent.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int64_t spent = server_->core()->usage().tokens_last_minute(1) - before;
  EXPECT_LT(spent, 400) << "generation kept running after the client cancelled";
}

TEST(UsageTrackerTest, ConcurrentCallsAreLimited) {
  services::UsageTracker usage;
  services::Quotas quotas;
  quotas.max_concurrent_requests = 2;
  auto a = usage.Admit(7, quotas);
  auto b = usage.Admit(7, quotas);
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = usage.Admit(7, quotas);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(c.status().message().find("max_concurrent_requests"), std::string::npos);
  EXPECT_TRUE(usage.Admit(8, quotas).ok());  // another tenant
  a->reset();
  EXPECT_TRUE(usage.Admit(7, quotas).ok());
}

}  // namespace
}  // namespace tome
