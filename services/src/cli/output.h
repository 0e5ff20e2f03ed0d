// Human and JSON output of the tome CLI.
#pragma once

#include <grpcpp/support/status.h>

#include <google/protobuf/message.h>

#include "tome/v1/documents.pb.h"
#include "tome/v1/query.pb.h"

namespace tome::cli {

const char* StatusCodeName(grpc::StatusCode code);
// One JSON object on one line (proto3 JSON mapping).
void PrintJson(const google::protobuf::Message& message);
void PrintDocument(const v1::Document& document);
void PrintDocumentRow(const v1::Document& document, bool header);
void PrintSummary(const v1::AskSummary& summary);

// A one-line progress bar on stderr: percentage, tokens, tokens/s and ETA.
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
