#include "cli/flags.h"

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

ABSL_FLAG(std::string, server, "127.0.0.1:7070", "tomed address HOST:PORT");
ABSL_FLAG(bool, json, false, "print results as JSON (one object per line)");
ABSL_FLAG(double, timeout, 0, "deadline of each call in seconds (0 = none)");
ABSL_FLAG(bool, verbose, false, "`ingest`/`append`: list skipped files and sections sent");
ABSL_FLAG(std::string, api_key, "",
          "API key, sent as `authorization: Bearer KEY` (else $TOME_API_KEY, else "
          "--api_key_file)");
ABSL_FLAG(std::string, api_key_file, "", "file holding the API key (or `api_key=KEY`)");
ABSL_FLAG(std::string, admin_key, "",
          "admin key for `tome admin ...` (else $TOME_ADMIN_KEY, else --admin_key_file)");
ABSL_FLAG(std::string, admin_key_file, "", "file holding the admin key (or `admin_key=KEY`)");
ABSL_FLAG(bool, tls, false, "connect with TLS, verifying the server against the system roots");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA certificates that signed tomed's certificate (implies --tls)");
ABSL_FLAG(std::string, tls_cert, "", "mutual TLS: this client's PEM certificate (implies --tls)");
ABSL_FLAG(std::string, tls_key, "", "mutual TLS: the PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "name to verify in the server's certificate instead of --server's host");

ABSL_FLAG(std::string, name, "",
          "`ingest`: document name (default: the file or directory name); `create-key`: label");
ABSL_FLAG(bool, wait, true, "`ingest`: wait for ingestion to finish, showing progress");
ABSL_FLAG(bool, dry_run, false,
          "`ingest`/`append`: print the files or chapters that would be sent; send nothing");
ABSL_FLAG(int64_t, max_file_kb, 1024, "`ingest DIR`: skip files larger than this (KiB)");
ABSL_FLAG(std::vector<std::string>, exclude, {},
          "`ingest DIR`: extra gitignore-style patterns to skip, comma-separated");
ABSL_FLAG(bool, gitignore, true, "`ingest DIR`: honour .gitignore files");
ABSL_FLAG(bool, chapters, true, "`ingest FILE`: detect chapters and send one section each");
ABSL_FLAG(bool, include_shared, false, "`list`: also list documents shared with you");
ABSL_FLAG(bool, public, false, "`share`: make the document readable by every tenant");

ABSL_FLAG(std::string, session, "", "`ask`: ask within this session (no DOC argument then)");
ABSL_FLAG(int64_t, doc_version, 0,
          "`ask`/`session create`: document version (0 = latest); alias --version=N");
ABSL_FLAG(int32_t, max_tokens, 0, "`ask`: maximum tokens to generate (0 = server default)");
ABSL_FLAG(double, temperature, 0.0, "`ask`: sampling temperature (0 = greedy)");
ABSL_FLAG(double, top_p, 0.0, "`ask`: nucleus sampling mass (0 = no truncation)");
ABSL_FLAG(uint64_t, seed, 0, "`ask`: sampler seed");
ABSL_FLAG(int32_t, max_citations, 0, "`ask`: citations to return (0 = server default, 3)");
ABSL_FLAG(bool, no_citations, false, "`ask`: return no citations");

ABSL_FLAG(int64_t, max_stored_bytes, 0, "quota: bytes stored (0 = no limit)");
ABSL_FLAG(int64_t, max_documents, 0, "quota: documents owned (0 = no limit)");
ABSL_FLAG(int32_t, max_concurrent_requests, 0, "quota: calls at once (0 = no limit)");
ABSL_FLAG(int64_t, max_tokens_per_minute, 0, "quota: tokens per minute (0 = no limit)");
ABSL_FLAG(int64_t, session_ttl_seconds, 0, "session lifetime when unused (0 = server default)");

namespace tome::cli {
namespace {

bool IsNumber(absl::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

absl::flat_hash_set<std::string>& GivenFlags() {
  static auto* given = new absl::flat_hash_set<std::string>();
  return *given;
}

// Records the flag named by `arg` ("--name", "-name=value", "--noname"). Abseil's own
// "was it given" is not public in the Debian release.
void RecordFlag(absl::string_view arg) {
  if (!absl::ConsumePrefix(&arg, "--")) {
    if (!absl::ConsumePrefix(&arg, "-")) return;
  }
  arg = arg.substr(0, arg.find('='));
  GivenFlags().insert(std::string(arg));
  if (absl::ConsumePrefix(&arg, "no")) GivenFlags().insert(std::string(arg));
}

}  // namespace

std::vector<char*> PreprocessArgs(int argc, char** argv, std::vector<std::string>* storage) {
  storage->clear();
  storage->reserve(argc);
  for (int i = 0; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    bool rewritten = false;
    for (absl::string_view prefix : {"--version=", "-version="}) {
      if (!rewritten && absl::StartsWith(arg, prefix) && IsNumber(arg.substr(prefix.size()))) {
        storage->push_back("--doc_version=" + std::string(arg.substr(prefix.size())));
        rewritten = true;
      }
    }
    if (rewritten) continue;
    if (arg == "--") {
      for (; i < argc; ++i) storage->push_back(argv[i]);
      break;
    }
    if (i > 0) RecordFlag(arg);
    if ((arg == "--version" || arg == "-version") && i + 1 < argc && IsNumber(argv[i + 1])) {
      storage->push_back(std::string("--doc_version=") + argv[++i]);
      continue;
    }
    storage->push_back(std::string(arg));
  }
  std::vector<char*> out;
  for (std::string& s : *storage) out.push_back(s.data());
  return out;
}

bool FlagGiven(const char* name) { return GivenFlags().contains(name); }

}  // namespace tome::cli
