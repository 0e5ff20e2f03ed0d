// Flags of the tome CLI (defined in flags.cc). `--version=N` is rewritten to --doc_version=N
// before parsing, since Abseil owns --version.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"

// Connection and output.
ABSL_DECLARE_FLAG(std::string, server);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(double, timeout);
ABSL_DECLARE_FLAG(bool, verbose);
ABSL_DECLARE_FLAG(std::string, api_key);
ABSL_DECLARE_FLAG(std::string, api_key_file);
ABSL_DECLARE_FLAG(std::string, admin_key);
ABSL_DECLARE_FLAG(std::string, admin_key_file);
ABSL_DECLARE_FLAG(bool, tls);
ABSL_DECLARE_FLAG(std::string, tls_ca);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_server_name);
// Documents and ingestion.
ABSL_DECLARE_FLAG(std::string, name);
ABSL_DECLARE_FLAG(bool, wait);
ABSL_DECLARE_FLAG(bool, dry_run);
ABSL_DECLARE_FLAG(int64_t, max_file_kb);
ABSL_DECLARE_FLAG(std::vector<std::string>, exclude);
ABSL_DECLARE_FLAG(bool, gitignore);
ABSL_DECLARE_FLAG(bool, chapters);
ABSL_DECLARE_FLAG(bool, include_shared);
ABSL_DECLARE_FLAG(bool, public);
// Questions and sessions.
ABSL_DECLARE_FLAG(std::string, session);
ABSL_DECLARE_FLAG(int64_t, doc_version);
ABSL_DECLARE_FLAG(int32_t, max_tokens);
ABSL_DECLARE_FLAG(double, temperature);
ABSL_DECLARE_FLAG(double, top_p);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(int32_t, max_citations);
ABSL_DECLARE_FLAG(bool, no_citations);
// Admin quotas.
ABSL_DECLARE_FLAG(int64_t, max_stored_bytes);
ABSL_DECLARE_FLAG(int64_t, max_documents);
ABSL_DECLARE_FLAG(int32_t, max_concurrent_requests);
ABSL_DECLARE_FLAG(int64_t, max_tokens_per_minute);
ABSL_DECLARE_FLAG(int64_t, session_ttl_seconds);

namespace tome::cli {

// Before absl::ParseCommandLine: rewrites `--version=N` / `--version N` (N a number) to
// `--doc_version=N` (a bare `--version` is left to Abseil) and records which flags are
// given. Returns the new argument list (pointers into `storage`).
std::vector<char*> PreprocessArgs(int argc, char** argv, std::vector<std::string>* storage);

// Whether the flag `name` was given on the command line (after PreprocessArgs).
bool FlagGiven(const char* name);

}  // namespace tome::cli
