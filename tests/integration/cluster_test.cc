// Cluster mode end to end on loopback: a real etcd (the Debian etcd-server binary), routers
// and workers as real tomed processes with their own ports and data dirs. A worker killed
// with SIGKILL loses no document (the next worker takes each over from its replica text and
// answers the same); a router restart loses nothing (sessions included); routers reach
// workers over mutual TLS. Skips only when the etcd binary is missing.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cluster/etcd_client.h"
#include "cluster/etcd_records.h"
#include "cluster/membership.h"
#include "cluster/rendezvous.h"
#include "cluster/worker_registration.h"
#include "gtest/gtest.h"
#include "tests/testutil/process.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_certs.h"
#include "tome/services/bearer_interceptor.h"
#include "tome/services/tls.h"
#include "tome/v1/admin.grpc.pb.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"
#include "tome/v1/sessions.grpc.pb.h"

#ifndef ETCD_BINARY
#define ETCD_BINARY "/usr/bin/etcd"
#endif

namespace tome {
namespace {

using testing::ChildProcess;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// grpc.health.v1.Health/Check on 127.0.0.1:`port`, without the generated code: the request
// is {1: service}, the reply {1: status}. Returns 1 (SERVING), 2 (NOT_SERVING), or -1 when
// the call fails.
int HealthStatus(int port, const std::string& service) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  std::string bytes = {'\x0a', static_cast<char>(service.size())};
  bytes += service;
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), reply;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue queue;
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &queue);
  call->StartCall();
  grpc::Status status;
  call->Finish(&reply, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  queue.Next(&tag, &ok);
  if (!ok || !status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!reply.Dump(&slices).ok()) return -1;
  std::string out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out.size() >= 2 && out[0] == '\x08' ? out[1] : 0;
}

// A client of one router.
struct Client {
  std::unique_ptr<v1::DocumentService::Stub> documents;
  std::unique_ptr<v1::QueryService::Stub> queries;
  std::unique_ptr<v1::SessionService::Stub> sessions;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(ETCD_BINARY, X_OK) != 0) {
      GTEST_SKIP() << "etcd is not installed (" ETCD_BINARY
                      "): cluster tests need the Debian "
                      "package etcd-server (tools/install_deps.sh installs it)";
    }
    std::ofstream(dir_.Sub("peer-token")) << "cluster-test-peer-token-0123456789abcdef\n";
    StartEtcd();
  }

  // Starts etcd on fresh loopback ports (replacing one already running). With `tls`, its
  // client URL is https with the test PKI (written by the caller into dir_), and it requires
  // client certificates from that CA.
  void StartEtcd(bool tls = false) {
    const int client_port = FreePort(), peer_port = FreePort();
    ASSERT_GT(client_port, 0);
    etcd_endpoint_ = absl::StrCat("127.0.0.1:", client_port);
    const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port);
    const std::string client_url = (tls ? "https://" : "http://") + etcd_endpoint_;
    std::vector<std::string> argv = {
        ETCD_BINARY, "--name=test", "--data-dir=" + dir_.Sub(tls ? "etcd-tls" : "etcd"),
        "--listen-client-urls=" + client_url, "--advertise-client-urls=" + client_url,
        "--listen-peer-urls=" + peer_url, "--initial-advertise-peer-urls=" + peer_url,
        "--initial-cluster=test=" + peer_url};
    if (tls) {
      for (std::string flag : {"--cert-file=" + dir_.Sub("server.pem"),
                               "--key-file=" + dir_.Sub("server.key"),
                               "--trusted-ca-file=" + dir_.Sub("ca.pem"),
                               std::string("--client-cert-auth")}) {
        argv.push_back(flag);
      }
    }
    etcd_.reset();
    etcd_ = std::make_unique<ChildProcess>(argv, dir_.Sub("etcd.log"));
    auto client = services::cluster::EtcdClient::Connect(
        etcd_endpoint_, tls ? EtcdClientTls() : services::ClientTlsOptions(), absl::Seconds(1));
    ASSERT_TRUE(client.ok()) << client.status();
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!(*client)->GetPrefix("/").ok()) {
      ASSERT_LT(absl::Now(), deadline) << "etcd did not start; see " << dir_.Sub("etcd.log");
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // TLS to an etcd started with StartEtcd(true), with the test PKI's client certificate.
  services::ClientTlsOptions EtcdClientTls() {
    services::ClientTlsOptions tls;
    tls.enabled = true;
    tls.ca_file = dir_.Sub("ca.pem");
    tls.cert_file = dir_.Sub("client.pem");
    tls.key_file = dir_.Sub("client.key");
    return tls;
  }

  std::vector<std::string> Common(const std::string& name) {
    return {TOMED_BINARY,
            "--listen=127.0.0.1:0",
            "--data_dir=" + dir_.Sub(name),
            "--port_file=" + dir_.Sub(name + ".port"),
            "--metrics_listen=",
            "--etcd=" + etcd_endpoint_,
            "--peer_token_file=" + dir_.Sub("peer-token")};
  }

  // Starts tomed `name` with `argv`; returns its port.
  int Launch(const std::string& name, std::vector<std::string> argv) {
    std::remove(dir_.Sub(name + ".port").c_str());
    procs_[name] = std::make_unique<ChildProcess>(argv, dir_.Sub(name + ".log"));
    const int port = testing::WaitForPortFile(dir_.Sub(name + ".port"), 90);
    EXPECT_GT(port, 0) << name << " did not start; see " << dir_.Sub(name + ".log");
    ports_[name] = port;
    return port;
  }

  int StartWorker(const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = Common(name);
    for (std::string flag : {"--role=worker", "--model=" TOME_MODEL_DIR, "--threads=1",
                             "--checkpoint_tokens=512", "--etcd_lease_seconds=3"}) {
      argv.push_back(flag);
    }
    argv.push_back("--worker_id=" + name);
    argv.insert(argv.end(), extra.begin(), extra.end());
    return Launch(name, argv);
  }

  int StartRouter(const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = Common(name);
    argv.push_back("--role=router");
    argv.insert(argv.end(), extra.begin(), extra.end());
    return Launch(name, argv);
  }

  // The first router of a cluster writes the bootstrap credentials into its data dir.
  std::string Credential(const std::string& router, const std::string& name) {
    return services::ReadCredential(dir_.Sub(router) + "/bootstrap-credentials", name);
  }

  Client Connect(const std::string& router, const std::string& key) {
    auto channel = services::AuthenticatedChannel(absl::StrCat("127.0.0.1:", ports_[router]), key);
    return {v1::DocumentService::NewStub(channel), v1::QueryService::NewStub(channel),
            v1::SessionService::NewStub(channel)};
  }

  static std::string Book(int i) {
    std::string text;
    for (int line = 0; line < 25; ++line) {
      absl::StrAppend(&text, "Chapter ", line, " of book ", i, ". Keeper ", i * 11, " counted ",
                      line + i, " ships in the harbour of town ", i, ".\n");
    }
    return text;
  }

  // Creates a document with `text` and waits until it is READY; returns its id.
  static std::string Ingest(Client& c, const std::string& name, const std::string& text) {
    v1::Document document;
    {
      grpc::ClientContext context;
      v1::CreateDocumentRequest request;
      request.set_name(name);
      grpc::Status s = c.documents->CreateDocument(&context, request, &document);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) return "";
    }
    {
      grpc::ClientContext context;
      v1::AppendTextResponse response;
      auto writer = c.documents->AppendText(&context, &response);
      v1::AppendTextRequest piece;
      piece.set_document_id(document.id());
      piece.set_section("part one");
      piece.set_text(text.substr(0, text.size() / 2));
      writer->Write(piece);
      piece.clear_document_id();
      piece.set_section("part two");
      piece.set_text(text.substr(text.size() / 2));
      writer->Write(piece);
      writer->WritesDone();
      grpc::Status s = writer->Finish();
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    WaitReady(c, document.id());
    return document.id();
  }

  static void WaitReady(Client& c, const std::string& id) {
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    for (;;) {
      grpc::ClientContext context;
      v1::GetDocumentRequest request;
      request.set_document_id(id);
      v1::Document document;
      grpc::Status s = c.documents->GetDocument(&context, request, &document);
      ASSERT_TRUE(s.ok()) << s.error_message();
      if (document.status() == v1::DOCUMENT_STATUS_READY) return;
      ASSERT_NE(document.status(), v1::DOCUMENT_STATUS_FAILED) << document.error();
      ASSERT_LT(absl::Now(), deadline) << "document " << id << " is not ready";
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  // Asks (greedy, so answers are reproducible); empty id = in `session`.
  static v1::AskSummary Ask(Client& c, const std::string& id, const std::string& question,
                            const std::string& session = "", grpc::Status* status = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::AskRequest request;
    if (session.empty()) {
      request.set_document_id(id);
    } else {
      request.set_session_id(session);
    }
    request.set_question(question);
    request.set_max_tokens(16);
    auto reader = c.queries->Ask(&context, request);
    v1::AskResponse response;
    v1::AskSummary summary;
    while (reader->Read(&response)) {
      if (response.has_summary()) summary = response.summary();
    }
    grpc::Status s = reader->Finish();
    if (status) {
      *status = s;
    } else {
      EXPECT_TRUE(s.ok()) << "asking about " << id << session << ": " << s.error_message();
    }
    return summary;
  }

  static std::set<std::string> Listed(Client& c) {
    grpc::ClientContext context;
    v1::ListDocumentsRequest request;
    request.set_page_size(1000);
    v1::ListDocumentsResponse response;
    grpc::Status s = c.documents->ListDocuments(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::set<std::string> ids;
    for (const auto& d : response.documents()) ids.insert(d.id());
    return ids;
  }

  testing::TempDir dir_;
  std::string etcd_endpoint_;
  std::unique_ptr<ChildProcess> etcd_;
  std::map<std::string, std::unique_ptr<ChildProcess>> procs_;
  std::map<std::string, int> ports_;
};

// The etcd subset (proto/etcd/v3/etcd_subset.proto) against the real server: KV, Txn,
// leases and watches.
TEST_F(ClusterTest, EtcdClientSpeaksTheRealEtcdApi) {
  using services::cluster::EtcdClient;
  using services::cluster::EtcdEvent;
  EtcdClient etcd(etcd_endpoint_);
  ASSERT_TRUE(etcd.Put("/t/a", "1").ok());
  ASSERT_TRUE(etcd.Put("/t/b", std::string("\0bin\xff", 5)).ok());
  ASSERT_TRUE(etcd.Put("/u/c", "elsewhere").ok());
  auto range = etcd.GetPrefix("/t/");
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs.size(), 2u);
  EXPECT_EQ(range->kvs[1].value, std::string("\0bin\xff", 5));
  EXPECT_GT(range->revision, 0);
  auto a = etcd.Get("/t/a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(etcd.Get("/t/none").status().code(), absl::StatusCode::kNotFound);
  // Compare-and-swap: on the right revision only; 0 = must not exist.
  EXPECT_FALSE(*etcd.CompareAndPut("/t/a", a->mod_revision + 100, "2"));
  EXPECT_TRUE(*etcd.CompareAndPut("/t/a", a->mod_revision, "2"));
  EXPECT_FALSE(*etcd.CompareAndPut("/t/a", 0, "3"));
  EXPECT_TRUE(*etcd.CompareAndPut("/t/new", 0, "x"));
  EXPECT_EQ(etcd.Get("/t/a")->value, "2");
  // Counters for tenant ids from two "routers" never collide.
  services::cluster::EtcdRecordStore r1(&etcd, "/t"), r2(&etcd, "/t");
  std::set<int64_t> ids;
  for (int i = 0; i < 10; ++i) {
    ids.insert(*r1.NextId("next", 1));
    ids.insert(*r2.NextId("next", 1));
  }
  EXPECT_EQ(ids.size(), 20u);
  EXPECT_EQ(*ids.begin(), 1);
  // A watch from a revision sees later puts and deletes.
  std::vector<EtcdEvent> seen;
  std::mutex mu;
  std::thread watcher([&] {
    etcd.Watch("/t/", range->revision + 1,
               [&](const std::vector<EtcdEvent>& events) {
                 std::lock_guard<std::mutex> lock(mu);
                 seen.insert(seen.end(), events.begin(), events.end());
               })
        .IgnoreError();
  });
  ASSERT_TRUE(etcd.Delete("/t/b").ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!seen.empty() && seen.back().type == EtcdEvent::Type::kDelete) break;
    }
    ASSERT_LT(absl::Now(), deadline) << "the watch saw no delete";
    absl::SleepFor(absl::Milliseconds(20));
  }
  etcd.CancelWatches();
  watcher.join();
  EXPECT_EQ(seen.back().kv.key, "/t/b");
  EXPECT_EQ(seen.front().type, EtcdEvent::Type::kPut);  // the CAS writes came first
  // Leases: a key under a lease lives while it is kept alive and goes with its revocation.
  EtcdClient etcd2(etcd_endpoint_);
  auto lease = etcd2.GrantLease(5);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(etcd2.Put("/t/leased", "v", *lease).ok());
  EXPECT_EQ(etcd2.Get("/t/leased")->lease, *lease);
  auto ttl = etcd2.KeepAlive(*lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GT(*ttl, 0);
  ASSERT_TRUE(etcd2.RevokeLease(*lease).ok());
  EXPECT_EQ(etcd2.Get("/t/leased").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*etcd2.KeepAlive(*lease), 0);  // expired/revoked
}

TEST_F(ClusterTest, MembershipFollowsRegistrationsAndLeaseExpiry) {
  using namespace services::cluster;
  EtcdClient router_etcd(etcd_endpoint_), worker_etcd(etcd_endpoint_);
  MembershipWatcher membership(&router_etcd, "/m");
  ASSERT_TRUE(membership.Start().ok());
  EXPECT_TRUE(membership.workers().empty());
  auto a = WorkerRegistration::Start(&worker_etcd, "/m", {"a", "127.0.0.1:1"}, 2);
  auto b = WorkerRegistration::Start(&worker_etcd, "/m", {"b", "127.0.0.1:2"}, 2);
  ASSERT_TRUE(a.ok() && b.ok());
  auto count_is = [&](size_t n) {
    return membership.WaitFor([n](const auto& w) { return w.size() == n; }, absl::Seconds(10));
  };
  ASSERT_TRUE(count_is(2));
  // Registrations outlive several TTLs while kept alive.
  absl::SleepFor(absl::Seconds(3));
  EXPECT_EQ(membership.workers().size(), 2u);
  a->reset();  // a clean stop revokes the lease: gone at once
  ASSERT_TRUE(count_is(1));
  EXPECT_EQ(membership.workers()[0].id, "b");
  EXPECT_FALSE(WorkerRegistration::Start(&worker_etcd, "/m", {"x/y", "h:1"}, 2).ok());
}

const char kQuestion[] = "Who counted ships, and how many?";

TEST_F(ClusterTest, EveryDocumentSurvivesAWorkerKilledWithSigkill) {
  const std::vector<std::string> workers = {"w1", "w2", "w3"};
  for (const auto& w : workers) ASSERT_GT(StartWorker(w), 0);
  ASSERT_GT(StartRouter("r1"), 0);
  ASSERT_GT(StartRouter("r2"), 0);
  const std::string key = Credential("r1", "TOME_API_KEY");
  ASSERT_FALSE(key.empty()) << "the first router wrote no bootstrap credentials";
  Client via[2] = {Connect("r1", key), Connect("r2", key)};

  // Six documents, created through both routers, placed over the three workers.
  std::vector<std::string> ids;
  std::map<std::string, int> owned;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(Ingest(via[i % 2], absl::StrCat("book-", i), Book(i)));
    ASSERT_FALSE(ids.back().empty());
    uint64_t id = std::stoull(ids.back());
    owned[services::cluster::RankWorkers(id, workers)[0]]++;
  }
  ASSERT_GE(owned.size(), 2u) << "placement should spread six documents";
  std::map<std::string, std::string> before;
  for (const std::string& id : ids) {
    before[id] = Ask(via[0], id, kQuestion).answer();
    ASSERT_FALSE(before[id].empty());
    EXPECT_EQ(Ask(via[1], id, kQuestion).answer(), before[id]) << "routers disagree on " << id;
  }
  EXPECT_EQ(Listed(via[1]), std::set<std::string>(ids.begin(), ids.end()));

  // Kill the owner of the first document, without warning.
  const std::vector<std::string> ranked =
      services::cluster::RankWorkers(std::stoull(ids[0]), workers);
  const std::string victim = ranked[0], heir = ranked[1];
  procs_[victim]->Stop(SIGKILL);
  const absl::Time killed = absl::Now();

  // At once (its lease still alive): every document answers, the same, through either router.
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(Ask(via[i % 2], ids[i], kQuestion).answer(), before[ids[i]])
        << "document " << ids[i] << " after killing " << victim;
  }
  EXPECT_EQ(Listed(via[0]), std::set<std::string>(ids.begin(), ids.end()));
  // And after the lease expired and both routers dropped the worker.
  absl::SleepFor(absl::Seconds(4) - (absl::Now() - killed));
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(Ask(via[(i + 1) % 2], ids[i], kQuestion).answer(), before[ids[i]]);
  }
  EXPECT_EQ(Listed(via[1]), std::set<std::string>(ids.begin(), ids.end()));

  // The take-over replicated the first document again (to the last worker), and text
  // appended after the failover reaches that replica too: losing the heir as well keeps it.
  // (Documents whose replica was on the victim have no replica now; docs/DEPLOY.md.)
  // New text on one document after the failover reaches its new replica as well.
  {
    grpc::ClientContext context;
    v1::AppendTextResponse response;
    auto writer = via[0].documents->AppendText(&context, &response);
    v1::AppendTextRequest piece;
    piece.set_document_id(ids[0]);
    piece.set_text("Epilogue. The keeper retired and the harbour fell quiet.\n");
    writer->Write(piece);
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
    WaitReady(via[0], ids[0]);
  }
  const v1::AskSummary appended = Ask(via[0], ids[0], kQuestion);
  EXPECT_GT(appended.document_tokens(), 0);
  procs_[heir]->Stop(SIGKILL);
  const v1::AskSummary last = Ask(via[1], ids[0], kQuestion);
  EXPECT_EQ(last.answer(), appended.answer());
  EXPECT_EQ(last.document_tokens(), appended.document_tokens());
}

// A router is alive from the start (the overall health status, k8s liveness) but ready for
// traffic (the API services' status, k8s readiness) only while it sees a live worker.
TEST_F(ClusterTest, RouterIsReadyOnlyWhileItSeesAWorker) {
  const int router = StartRouter("r1");
  ASSERT_GT(router, 0);
  auto wait_for = [&](int want) {
    const absl::Time until = absl::Now() + absl::Seconds(15);
    while (HealthStatus(router, "tome.v1.QueryService") != want && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    return HealthStatus(router, "tome.v1.QueryService");
  };
  EXPECT_EQ(HealthStatus(router, ""), 1);
  EXPECT_EQ(wait_for(2), 2) << "ready with no worker";
  ASSERT_GT(StartWorker("w1"), 0);
  EXPECT_EQ(wait_for(1), 1) << "not ready with a live worker";
  EXPECT_EQ(HealthStatus(router, "tome.v1.DocumentService"), 1);
  procs_["w1"]->Stop(SIGKILL);
  EXPECT_EQ(wait_for(2), 2) << "still ready after the only worker's lease expired";
  EXPECT_EQ(HealthStatus(router, ""), 1);  // and still alive
}

// The replica holder of a document dies (SIGKILL): once its lease is gone the routers give
// the document a replica on its new holder, so that when the owner dies too, the last
// worker still takes the document over and answers the same.
TEST_F(ClusterTest, ALostReplicaHolderIsReplacedBeforeTheOwnerDies) {
  const std::vector<std::string> workers = {"w1", "w2", "w3"};
  for (const auto& w : workers) ASSERT_GT(StartWorker(w), 0);
  ASSERT_GT(StartRouter("r1"), 0);
  const std::string key = Credential("r1", "TOME_API_KEY");
  Client client = Connect("r1", key);
  const std::string id = Ingest(client, "book", Book(1));
  ASSERT_FALSE(id.empty());
  const std::string before = Ask(client, id, kQuestion).answer();
  ASSERT_FALSE(before.empty());
  const std::vector<std::string> ranked =
      services::cluster::RankWorkers(std::stoull(id), workers);
  const std::string owner = ranked[0], holder = ranked[1], last = ranked[2];

  procs_[holder]->Stop(SIGKILL);
  // Lease (3 s) expiry, then the repair sweep's copy to `last`; the router logs each sweep.
  const absl::Time until = absl::Now() + absl::Seconds(30);
  auto swept = [&] {
    std::ifstream log(dir_.Sub("r1.log"));
    std::string line;
    while (std::getline(log, line)) {
      if (absl::StrContains(line, "replica repair after a worker left: checked")) return true;
    }
    return false;
  };
  while (!swept() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(200));
  ASSERT_TRUE(swept()) << "no replica repair within 30 s; see " << dir_.Sub("r1.log");

  procs_[owner]->Stop(SIGKILL);
  absl::SleepFor(absl::Seconds(4));  // the owner's lease expires: only `last` is live
  const v1::AskSummary after = Ask(client, id, kQuestion);
  EXPECT_EQ(after.answer(), before) << "document lost with its owner and first holder; "
                                    << "only " << last << " is left";
}

TEST_F(ClusterTest, ARouterRestartLosesNothing) {
  ASSERT_GT(StartWorker("w1"), 0);
  ASSERT_GT(StartWorker("w2"), 0);
  ASSERT_GT(StartRouter("r1"), 0);
  ASSERT_GT(StartRouter("r2"), 0);
  const std::string admin_key = Credential("r1", "TOME_ADMIN_KEY");
  ASSERT_FALSE(admin_key.empty());

  // A tenant and key made through one router work through the other (tenants live in etcd).
  std::string key;
  {
    auto admin = v1::AdminService::NewStub(
        services::AuthenticatedChannel(absl::StrCat("127.0.0.1:", ports_["r2"]), admin_key));
    grpc::ClientContext c1;
    v1::CreateTenantRequest create;
    create.set_name("acme");
    v1::Tenant tenant;
    ASSERT_TRUE(admin->CreateTenant(&c1, create, &tenant).ok());
    grpc::ClientContext c2;
    v1::CreateApiKeyRequest request;
    request.set_tenant_id(tenant.id());
    v1::ApiKey created;
    ASSERT_TRUE(admin->CreateApiKey(&c2, request, &created).ok());
    key = created.secret();
  }
  Client client = Connect("r1", key);
  std::vector<std::string> ids;
  std::map<std::string, std::string> before;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(Ingest(client, absl::StrCat("tale-", i), Book(10 + i)));
    before[ids.back()] = Ask(client, ids.back(), kQuestion).answer();
  }
  // A session with one turn.
  std::string session;
  {
    grpc::ClientContext context;
    v1::CreateSessionRequest request;
    request.set_document_id(ids[1]);
    v1::Session created;
    ASSERT_TRUE(client.sessions->CreateSession(&context, request, &created).ok());
    session = created.id();
  }
  const v1::AskSummary turn1 = Ask(client, "", kQuestion, session);
  EXPECT_EQ(turn1.turn(), 1);
  EXPECT_EQ(turn1.session_id(), session);

  // The other router continues the same session (affinity comes from the id, not a router).
  Client other = Connect("r2", key);
  EXPECT_EQ(Ask(other, "", "And the harbour?", session).turn(), 2);

  // Kill r1 and start it again: it must route everything as before.
  procs_["r1"]->Stop(SIGKILL);
  ASSERT_GT(StartRouter("r1"), 0);
  client = Connect("r1", key);
  for (const std::string& id : ids) EXPECT_EQ(Ask(client, id, kQuestion).answer(), before[id]);
  EXPECT_EQ(Listed(client), std::set<std::string>(ids.begin(), ids.end()));
  {
    grpc::ClientContext context;
    v1::GetSessionRequest request;
    request.set_session_id(session);
    v1::Session got;
    grpc::Status s = client.sessions->GetSession(&context, request, &got);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(got.turns(), 2);
    EXPECT_EQ(got.document_id(), ids[1]);
  }
  const v1::AskSummary turn3 = Ask(client, "", "Who retired?", session);
  EXPECT_EQ(turn3.turn(), 3);
  {
    grpc::ClientContext context;
    v1::ListSessionsRequest request;
    v1::ListSessionsResponse listed;
    ASSERT_TRUE(client.sessions->ListSessions(&context, request, &listed).ok());
    ASSERT_EQ(listed.sessions_size(), 1);
    EXPECT_EQ(listed.sessions(0).id(), session);
  }
  // Bad ids are refused with a clear error, not a crash.
  grpc::Status status;
  Ask(client, "", kQuestion, "not-a-session", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Ask(client, "4294967296123", kQuestion, "", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  // The bootstrap tenant's key still works, and the restarted router did not bootstrap again.
  Client first = Connect("r1", Credential("r1", "TOME_API_KEY"));
  EXPECT_TRUE(Listed(first).empty());

  // No secret reaches a router's or worker's log, or etcd (which holds key hashes only).
  const std::vector<std::string> secrets = {key, admin_key, Credential("r1", "TOME_API_KEY"),
                                            "cluster-test-peer-token-0123456789abcdef"};
  for (const std::string name : {"r1", "r2", "w1", "w2"}) {
    std::ifstream in(dir_.Sub(name + ".log"));
    const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_FALSE(log.empty()) << name;
    for (const std::string& secret : secrets) {
      EXPECT_FALSE(absl::StrContains(log, secret)) << "a secret is in " << name << "'s log";
    }
  }
  services::cluster::EtcdClient etcd(etcd_endpoint_);
  auto everything = etcd.GetPrefix("/");
  ASSERT_TRUE(everything.ok()) << everything.status();
  EXPECT_FALSE(everything->kvs.empty());
  for (const auto& kv : everything->kvs) {
    for (const std::string& secret : secrets) {
      EXPECT_FALSE(absl::StrContains(kv.value, secret)) << "a secret is in etcd at " << kv.key;
    }
  }
}

TEST_F(ClusterTest, RouterReachesWorkersOverMutualTls) {
  testing::WriteTestPki(testing::MakeTestPki(), dir_.path());
  ASSERT_GT(StartWorker("w1", {"--tls_cert=" + dir_.Sub("server.pem"),
                               "--tls_key=" + dir_.Sub("server.key"),
                               "--tls_client_ca=" + dir_.Sub("ca.pem")}),
            0);
  ASSERT_GT(StartRouter("r1", {"--peer_tls_ca=" + dir_.Sub("ca.pem"),
                               "--peer_tls_cert=" + dir_.Sub("client.pem"),
                               "--peer_tls_key=" + dir_.Sub("client.key")}),
            0);
  // A router without the client certificate cannot reach the worker.
  ASSERT_GT(StartRouter("r2", {"--peer_tls_ca=" + dir_.Sub("ca.pem")}), 0);
  const std::string key = Credential("r1", "TOME_API_KEY");
  Client client = Connect("r1", key);
  const std::string id = Ingest(client, "secure", Book(3));
  ASSERT_FALSE(id.empty());
  EXPECT_FALSE(Ask(client, id, kQuestion).answer().empty());

  Client refused = Connect("r2", key);
  grpc::Status status;
  Ask(refused, id, kQuestion, "", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();

  // Nor can a client that skips the router: the worker wants the peer token (and here a
  // client certificate first).
  services::ClientTlsOptions tls;
  tls.enabled = true;
  tls.ca_file = dir_.Sub("ca.pem");
  tls.cert_file = dir_.Sub("client.pem");
  tls.key_file = dir_.Sub("client.key");
  auto channel = services::NewChannel(absl::StrCat("127.0.0.1:", ports_["w1"]), tls,
                                      grpc::ChannelArguments(), services::BearerInterceptors(key));
  ASSERT_TRUE(channel.ok());
  auto direct = v1::DocumentService::NewStub(*channel);
  grpc::ClientContext context;
  v1::GetDocumentRequest request;
  request.set_document_id(id);
  v1::Document document;
  status = direct->GetDocument(&context, request, &document);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
}

TEST_F(ClusterTest, EtcdTrafficCanBeMutualTls) {
  testing::WriteTestPki(testing::MakeTestPki(), dir_.path());
  StartEtcd(/*tls=*/true);
  using services::cluster::EtcdClient;
  auto good = EtcdClient::Connect(etcd_endpoint_, EtcdClientTls(), absl::Seconds(3));
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_TRUE((*good)->Put("/tls/a", "1").ok());
  EXPECT_EQ((*good)->Get("/tls/a")->value, "1");

  // Plaintext, and TLS without a client certificate, are refused by etcd.
  EtcdClient plaintext(etcd_endpoint_, absl::Seconds(3));
  EXPECT_FALSE(plaintext.Get("/tls/a").ok());
  services::ClientTlsOptions no_certificate = EtcdClientTls();
  no_certificate.cert_file.clear();
  no_certificate.key_file.clear();
  auto anonymous = EtcdClient::Connect(etcd_endpoint_, no_certificate, absl::Seconds(3));
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  EXPECT_EQ((*anonymous)->Get("/tls/a").status().code(), absl::StatusCode::kUnavailable);
  // A certificate file that does not exist is a clear error before any connection.
  services::ClientTlsOptions missing = EtcdClientTls();
  missing.cert_file = dir_.Sub("nowhere.pem");
  auto bad = EtcdClient::Connect(etcd_endpoint_, missing);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "--etcd_tls")) << bad.status();

  // A worker and a router that speak TLS to etcd form a working cluster.
  const std::vector<std::string> etcd_tls = {"--etcd_tls_ca=" + dir_.Sub("ca.pem"),
                                             "--etcd_tls_cert=" + dir_.Sub("client.pem"),
                                             "--etcd_tls_key=" + dir_.Sub("client.key")};
  ASSERT_GT(StartWorker("w1", etcd_tls), 0);
  ASSERT_GT(StartRouter("r1", etcd_tls), 0);
  Client client = Connect("r1", Credential("r1", "TOME_API_KEY"));
  const std::string id = Ingest(client, "over tls", Book(4));
  ASSERT_FALSE(id.empty());
  EXPECT_FALSE(Ask(client, id, kQuestion).answer().empty());
}

}  // namespace
}  // namespace tome
