// The tome CLI against a real tomed on loopback: tree and book ingestion with sections,
// citations, versions, sessions, admin commands, API key sources and exit codes.
// Sessions and admin are skipped against a server that does not implement them yet.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testutil/process.h"
#include "tests/testutil/temp_dir.h"

namespace tome {
namespace {

using testing::ChildProcess;

struct Result {
  int rc = -1;
  std::string out;
  std::string err;
};

// Runs argv with stdout and stderr captured separately.
Result RunCaptured(const std::vector<std::string>& argv, const std::string& err_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int fds[2];
  Result r;
  if (pipe(fds) != 0) return r;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(err, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  char buffer[4096];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof buffer)) > 0) r.out.append(buffer, n);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_path);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

std::string Field(const std::string& json, const std::string& name) {
  std::smatch m;
  const std::regex re("\"" + name + "\":\"?([^\",}]*)");
  return std::regex_search(json, m, re) ? std::string(m[1]) : "";
}

class CliProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string port_file = dir_.Sub("port");
    // The environment may point at another build's server (to test against it).
    const char* tomed = std::getenv("TOMED_BINARY");
    const char* model = std::getenv("TOME_MODEL_DIR");
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{tomed ? tomed : TOMED_BINARY, "--listen=127.0.0.1:0",
                                 "--data_dir=" + dir_.Sub("data"),
                                 std::string("--model=") + (model ? model : TOME_MODEL_DIR),
                                 "--port_file=" + port_file, "--checkpoint_tokens=512",
                                 // No metrics port (servers without the flag ignore it).
                                 "--metrics_listen=", "--undefok=metrics_listen"},
        dir_.Sub("tomed.log"));
    int port = -1;
    for (int i = 0; i < 240 && port <= 0 && server_->running(); ++i) {
      port = testing::WaitForPortFile(port_file, 0.5);
    }
    ASSERT_GT(port, 0) << "tomed did not start; see " << dir_.Sub("tomed.log");
    address_ = absl::StrCat("127.0.0.1:", port);
    credentials_ = dir_.Sub("data/bootstrap-credentials");
    has_auth_ = std::filesystem::exists(credentials_);
  }

  Result Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {TOME_CLI_BINARY, "--server=" + address_});
    if (has_auth_) args.insert(args.begin() + 2, "--api_key_file=" + credentials_);
    return RunCaptured(args, dir_.Sub("cli.err"));
  }

  Result Admin(std::vector<std::string> args) {
    args.insert(args.begin(), {"admin", "--admin_key_file=" + credentials_});
    return Cli(args);
  }

  void WriteFile(const std::string& rel, const std::string& content) {
    const std::filesystem::path path = std::filesystem::path(dir_.path()) / rel;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }

  std::string IngestJson(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"--json", "ingest"};
    args.insert(args.end(), extra.begin(), extra.end());
    Result r = Cli(args);
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(Field(r.out, "status"), "DOCUMENT_STATUS_READY") << r.out;
    return r.out;
  }

  testing::TempDir dir_;
  std::unique_ptr<ChildProcess> server_;
  std::string address_;
  std::string credentials_;
  bool has_auth_ = false;
};

TEST_F(CliProcessTest, IngestsATreeAsOneSectionPerFile) {
  WriteFile("proj/.gitignore", "*.o\nbuild/\n");
  WriteFile("proj/src/main.c", "int main() { return ships(); }\n");
  WriteFile("proj/src/ships.c", "int ships() { return 40; }\n");
  WriteFile("proj/src/ships.o", std::string("\x7f" "ELF\0\0", 6));
  WriteFile("proj/build/gen.c", "generated\n");
  WriteFile("proj/logo.bin", std::string("\x89PNG\0\0", 6));
  const std::string doc = IngestJson({dir_.Sub("proj")});
  EXPECT_EQ(Field(doc, "name"), "proj");
  EXPECT_EQ(Field(doc, "num_sections"), "3");  // .gitignore, src/main.c, src/ships.c
  const std::string id = Field(doc, "id");

  Result r = Cli({"ingest", "--verbose", "--wait=false", dir_.Sub("proj")});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "skipped logo.bin: binary (NUL byte)")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "skipped build/: ignored")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "3 sections")) << r.out;

  r = Cli({"ask", id, "What does ships return?", "--max_tokens=8"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "state from memory")) << r.out;
  if (absl::StrContains(r.out, "Sources:")) {
    EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\[1\] (\.gitignore|src/\w+\.c), line)")))
        << r.out;
  }
  r = Cli({"--json", "ask", id, "What does ships return?", "--max_tokens=8", "--no_citations"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const int generated = std::atoi(Field(r.out, "generated_tokens").c_str());
  EXPECT_TRUE(generated > 0 && generated <= 8) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\"citations\":[]")) << r.out;
}

TEST_F(CliProcessTest, IngestsABookAsOneSectionPerChapter) {
  std::string book = "THE LIGHTHOUSE\n\n";
  for (int c = 1; c <= 3; ++c) {
    absl::StrAppend(&book, "CHAPTER ", std::string(c, 'I'), ".\n");
    for (int i = 0; i < 8; ++i) {
      absl::StrAppend(&book, "At dawn the keeper of the lighthouse counted ", c * i, " ships.\n");
    }
  }
  WriteFile("book.txt", book);
  std::string doc = IngestJson({dir_.Sub("book.txt"), "--name=Lighthouse"});
  EXPECT_EQ(Field(doc, "name"), "Lighthouse");
  EXPECT_EQ(Field(doc, "num_sections"), "3");
  doc = IngestJson({dir_.Sub("book.txt"), "--chapters=false"});
  EXPECT_EQ(Field(doc, "num_sections"), "0");

  Result r = Cli({"ingest", "--dry_run", dir_.Sub("book.txt")});
  ASSERT_EQ(r.rc, 0);
  EXPECT_TRUE(absl::StrContains(r.out, "CHAPTER II.")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "4 sections")) << r.out;  // with the title page
}

TEST_F(CliProcessTest, VersionsErrorsAndExitCodes) {
  WriteFile("a.txt", "First version of the text.\n");
  WriteFile("b.txt", "Second part.\n");
  const std::string id = Field(IngestJson({dir_.Sub("a.txt")}), "id");
  Result r = Cli({"append", id, dir_.Sub("b.txt")});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "now version 2")) << r.out;
  ASSERT_EQ(Cli({"watch", id}).rc, 0);
  EXPECT_EQ(Cli({"ask", id, "What?", "--version=1", "--max_tokens=2"}).rc, 0);
  EXPECT_EQ(Cli({"ask", id, "What?", "--version", "2", "--max_tokens=2"}).rc, 0);
  r = Cli({"ask", id, "What?", "--version=9"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "error: NOT_FOUND: ")) << r.err;
  r = Cli({"get", "424242"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "NOT_FOUND")) << r.err;
  // Only a FAILED document is re-ingested (FaultsTest covers a damaged one end to end).
  r = Cli({"reingest", id});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "FAILED_PRECONDITION")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "has not failed")) << r.err;
  r = Cli({"reingest", "424242"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "NOT_FOUND")) << r.err;

  EXPECT_EQ(Cli({}).rc, 2);
  EXPECT_EQ(Cli({"bogus"}).rc, 2);
  EXPECT_EQ(Cli({"ask", id}).rc, 2);
  EXPECT_EQ(Cli({"session"}).rc, 2);
  EXPECT_EQ(Cli({"ask", "--session=s1", id, "What?"}).rc, 2);
  EXPECT_EQ(Cli({"ingest", dir_.Sub("missing.txt")}).rc, 2);
  EXPECT_EQ(RunCaptured({TOME_CLI_BINARY, "--server=" + address_, "admin", "list-tenants"},
                dir_.Sub("err")).rc,
            2);  // no admin key
  ASSERT_TRUE(server_->running());
}

TEST_F(CliProcessTest, Sessions) {
  WriteFile("a.txt", "Ada kept the lighthouse for forty years.\n");
  const std::string id = Field(IngestJson({dir_.Sub("a.txt")}), "id");
  Result r = Cli({"--json", "session", "create", id});
  if (r.rc != 0 && absl::StrContains(r.err, "UNIMPLEMENTED")) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string session = Field(r.out, "id");
  ASSERT_FALSE(session.empty()) << r.out;

  r = Cli({"ask", "--session=" + session, "Who kept it?", "--max_tokens=4"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("session ", session, " turn 1"))) << r.out;
  r = Cli({"--json", "ask", "--session", session, "How long?", "--max_tokens=4"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(Field(r.out, "turn"), "2") << r.out;

  r = Cli({"session", "get", session});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "turns: 2")) << r.out;
  r = Cli({"--json", "session", "fork", session});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string fork = Field(r.out, "id");
  EXPECT_EQ(Field(r.out, "parent_session_id"), session);
  r = Cli({"sessions", "list", id});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, session) && absl::StrContains(r.out, fork)) << r.out;
  ASSERT_EQ(Cli({"session", "delete", fork}).rc, 0);
  r = Cli({"session", "get", fork});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "NOT_FOUND")) << r.err;
}

TEST_F(CliProcessTest, AdminKeysSharingAndKeySources) {
  if (!has_auth_) GTEST_SKIP() << "server writes no bootstrap-credentials yet";
  Result r = Admin({"--json", "create-tenant", "team", "--max_documents=5"});
  if (r.rc != 0 && absl::StrContains(r.err, "UNIMPLEMENTED")) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string tenant = Field(r.out, "id");
  r = Admin({"set-quotas", tenant, "--max_tokens_per_minute=1000000"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "documents 5")) << r.out;  // kept
  EXPECT_TRUE(absl::StrContains(r.out, "tokens/minute 1000000")) << r.out;
  EXPECT_EQ(Admin({"set-quotas", tenant}).rc, 2);  // names no quota
  r = Admin({"list-tenants"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "team")) << r.out;
  ASSERT_EQ(Admin({"get-tenant", tenant}).rc, 0);

  r = Admin({"--json", "create-key", tenant, "ci"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string key_id = Field(r.out, "key_id");
  const std::string secret = Field(r.out, "secret");
  ASSERT_FALSE(secret.empty()) << r.out;
  r = Admin({"list-keys", tenant});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, key_id) && absl::StrContains(r.out, "active")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, secret));

  WriteFile("a.txt", "Notes of the default tenant.\n");
  const std::string id = Field(IngestJson({dir_.Sub("a.txt")}), "id");
  auto as_team = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {TOME_CLI_BINARY, "--server=" + address_, "--api_key=" + secret});
    return RunCaptured(args, dir_.Sub("team.err"));
  };
  EXPECT_EQ(as_team({"get", id}).rc, 1);
  r = Cli({"share", id, tenant});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "shared: tenants " + tenant)) << r.out;
  EXPECT_EQ(as_team({"get", id}).rc, 0);
  r = as_team({"list", "--include_shared"});
  EXPECT_TRUE(absl::StrContains(r.out, "(shared with you)")) << r.out;
  ASSERT_EQ(Cli({"share", id}).rc, 0);  // private again
  EXPECT_EQ(as_team({"get", id}).rc, 1);

  // The key from the environment, when no flag names one.
  setenv("TOME_API_KEY", secret.c_str(), 1);
  r = RunCaptured({TOME_CLI_BINARY, "--server=" + address_, "--json", "list"}, dir_.Sub("env.err"));
  unsetenv("TOME_API_KEY");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_FALSE(absl::StrContains(r.out, "\"id\":\"" + id + "\"")) << r.out;

  ASSERT_EQ(Admin({"revoke-key", key_id}).rc, 0);
  r = as_team({"list"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "UNAUTHENTICATED")) << r.err;
  r = RunCaptured({TOME_CLI_BINARY, "--server=" + address_, "--api_key=wrong", "list"},
                  dir_.Sub("e"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "UNAUTHENTICATED")) << r.err;
}

}  // namespace
}  // namespace tome
