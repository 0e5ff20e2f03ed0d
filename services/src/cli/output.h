// Human and JSON output of the tome CLI. With --json every Print* writes the message as one
// JSON object on one line (proto3 JSON mapping, original field names).
#pragma once

#include <grpcpp/support/status.h>

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>

#include "tome/v1/admin.pb.h"
#include "tome/v1/documents.pb.h"
#include "tome/v1/query.pb.h"
#include "tome/v1/sessions.pb.h"

namespace tome::cli {

const char* StatusCodeName(grpc::StatusCode code);
// One JSON object on one line.
void PrintJson(const google::protobuf::Message& message);
// "1.5 MiB"; "2025-01-31 12:00:00 UTC" ("-" if unset).
std::string Bytes(int64_t n);
std::string Time(const google::protobuf::Timestamp& t);

void PrintDocument(const v1::Document& document);
void PrintDocumentRow(const v1::Document& document, bool header, bool show_access);
// The statistics line and the citations after a streamed answer.
void PrintSummary(const v1::AskSummary& summary);
void PrintCitations(const v1::AskSummary& summary);

void PrintSession(const v1::Session& session);
void PrintSessionRow(const v1::Session& session, bool header);

void PrintTenant(const v1::Tenant& tenant);
void PrintTenantRow(const v1::Tenant& tenant, bool header);
// A newly created key, with its secret.
void PrintNewApiKey(const v1::ApiKey& key);
void PrintApiKeyRow(const v1::ApiKey& key, bool header);

// A one-line progress bar on stderr: percentage, tokens, tokens/s and ETA. Redrawn in place
// on a terminal; otherwise one line per whole percent.
class ProgressBar {
 public:
  explicit ProgressBar(bool interactive) : interactive_(interactive) {}
  void Update(const v1::IngestionProgress& progress);
  void Done();

 private:
  bool interactive_;
  bool drawn_ = false;
  int last_percent_ = -1;
};

}  // namespace tome::cli
