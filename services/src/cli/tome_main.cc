// tome: command-line client of a tomed server.
//
//   tome [--server=HOST:PORT] [--json] COMMAND [ARGS]
//
// Commands:
//   create NAME                 create an empty document, print its id
//   append DOC FILE|-           append a file's text (or stdin) to a document
//   ingest FILE|- [--name=N]    create + append + show ingestion progress until ready
//   get DOC                     show a document
//   list                        list documents
//   delete DOC                  delete a document and everything stored for it
//   watch DOC                   follow a document's ingestion
//   ask DOC QUESTION            ask a question; the answer streams as it is generated
//   health                      check that the server is serving
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/output.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:7070", "tomed address");
ABSL_FLAG(bool, json, false, "print results as JSON (one object per line)");
ABSL_FLAG(std::string, name, "", "document name for `ingest` (default: the file name)");
ABSL_FLAG(bool, wait, true, "`ingest`: wait for ingestion to finish, showing progress");
ABSL_FLAG(int32_t, max_tokens, 0, "`ask`: maximum tokens to generate (0 = server default)");
ABSL_FLAG(double, temperature, 0.0, "`ask`: sampling temperature (0 = greedy)");
ABSL_FLAG(uint64_t, seed, 0, "`ask`: sampler seed");
ABSL_FLAG(double, timeout, 0, "deadline of each call in seconds (0 = none)");

namespace tome::cli {
namespace {

constexpr size_t kPieceBytes = 1 << 20;  // AppendText message size

int Fail(const grpc::Status& status) {
  std::fprintf(stderr, "error: %s: %s\n", StatusCodeName(status.error_code()),
               status.error_message().c_str());
  return 1;
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "error: %s\nrun `tome --help` for usage\n", message.c_str());
  return 2;
}

void SetDeadline(grpc::ClientContext* context) {
  const double timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000)));
  }
}

bool ReadInput(const std::string& path, std::string* text) {
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    *text = ss.str();
    return true;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *text = ss.str();
  return true;
}

class Client {
 public:
  explicit Client(std::shared_ptr<grpc::Channel> channel)
      : channel_(channel),
        documents_(v1::DocumentService::NewStub(channel)),
        queries_(v1::QueryService::NewStub(channel)) {}

  int Create(const std::string& name) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::CreateDocumentRequest request;
    request.set_name(name);
    v1::Document document;
    grpc::Status status = documents_->CreateDocument(&context, request, &document);
    if (!status.ok()) return Fail(status);
    PrintDocument(document);
    return 0;
  }

  grpc::Status Append(const std::string& id, const std::string& text,
                      v1::AppendTextResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto writer = documents_->AppendText(&context, response);
    for (size_t offset = 0; offset < text.size() || offset == 0; offset += kPieceBytes) {
      v1::AppendTextRequest request;
      if (offset == 0) request.set_document_id(id);
      request.set_text(text.substr(offset, kPieceBytes));
      if (!writer->Write(request)) break;
      if (text.empty()) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  int AppendFile(const std::string& id, const std::string& path) {
    std::string text;
    if (!ReadInput(path, &text)) return Usage(absl::StrCat("cannot read ", path));
    v1::AppendTextResponse response;
    grpc::Status status = Append(id, text, &response);
    if (!status.ok()) return Fail(status);
    if (absl::GetFlag(FLAGS_json)) {
      PrintJson(response);
    } else {
      std::printf("appended %lld bytes (%lld tokens) to document %s\n",
                  static_cast<long long>(response.appended_bytes()),
                  static_cast<long long>(response.appended_tokens()), id.c_str());
    }
    return 0;
  }

  int Ingest(const std::string& path) {
    std::string text;
    if (!ReadInput(path, &text)) return Usage(absl::StrCat("cannot read ", path));
    std::string name = absl::GetFlag(FLAGS_name);
    if (name.empty()) name = path == "-" ? "stdin" : path.substr(path.find_last_of('/') + 1);
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::CreateDocumentRequest create;
    create.set_name(name);
    v1::Document document;
    grpc::Status status = documents_->CreateDocument(&context, create, &document);
    if (!status.ok()) return Fail(status);
    v1::AppendTextResponse response;
    status = Append(document.id(), text, &response);
    if (!status.ok()) return Fail(status);
    if (!absl::GetFlag(FLAGS_json)) {
      std::printf("document %s: %lld bytes, %lld tokens\n", document.id().c_str(),
                  static_cast<long long>(response.appended_bytes()),
                  static_cast<long long>(response.appended_tokens()));
    }
    if (absl::GetFlag(FLAGS_wait)) {
      const int rc = Watch(document.id(), /*quiet_json=*/true);
      if (rc != 0) return rc;
    }
    return Get(document.id());
  }

  int Get(const std::string& id) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetDocumentRequest request;
    request.set_document_id(id);
    v1::Document document;
    grpc::Status status = documents_->GetDocument(&context, request, &document);
    if (!status.ok()) return Fail(status);
    PrintDocument(document);
    return 0;
  }

  int List() {
    std::string token;
    bool any = false;
    do {
      grpc::ClientContext context;
      SetDeadline(&context);
      v1::ListDocumentsRequest request;
      request.set_page_token(token);
      v1::ListDocumentsResponse response;
      grpc::Status status = documents_->ListDocuments(&context, request, &response);
      if (!status.ok()) return Fail(status);
      for (const v1::Document& d : response.documents()) {
        PrintDocumentRow(d, !any);
        any = true;
      }
      token = response.next_page_token();
    } while (!token.empty());
    if (!any && !absl::GetFlag(FLAGS_json)) std::printf("no documents\n");
    return 0;
  }

  int Delete(const std::string& id) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::DeleteDocumentRequest request;
    request.set_document_id(id);
    v1::DeleteDocumentResponse response;
    grpc::Status status = documents_->DeleteDocument(&context, request, &response);
    if (!status.ok()) return Fail(status);
    if (!absl::GetFlag(FLAGS_json)) std::printf("deleted document %s\n", id.c_str());
    return 0;
  }

  int Watch(const std::string& id, bool quiet_json = false) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::WatchIngestionRequest request;
    request.set_document_id(id);
    auto reader = documents_->WatchIngestion(&context, request);
    v1::IngestionProgress progress;
    ProgressBar bar(isatty(fileno(stderr)));
    bool failed = false;
    while (reader->Read(&progress)) {
      if (absl::GetFlag(FLAGS_json)) {
        if (!quiet_json) PrintJson(progress);
      } else {
        bar.Update(progress);
      }
      failed = progress.status() == v1::DOCUMENT_STATUS_FAILED;
    }
    bar.Done();
    grpc::Status status = reader->Finish();
    if (!status.ok()) return Fail(status);
    if (failed) {
      std::fprintf(stderr, "error: ingestion failed: %s\n", progress.error().c_str());
      return 1;
    }
    return 0;
  }

  int Ask(const std::string& id, const std::string& question) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::AskRequest request;
    request.set_document_id(id);
    request.set_question(question);
    request.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
    request.set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
    request.set_seed(absl::GetFlag(FLAGS_seed));
    auto reader = queries_->Ask(&context, request);
    v1::AskResponse response;
    const bool json = absl::GetFlag(FLAGS_json);
    while (reader->Read(&response)) {
      if (response.has_delta() && !json) {
        std::fputs(response.delta().text().c_str(), stdout);
        std::fflush(stdout);
      } else if (response.has_summary()) {
        if (json) {
          PrintJson(response.summary());
        } else {
          PrintSummary(response.summary());
        }
      }
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      if (!json) std::printf("\n");
      return Fail(status);
    }
    return 0;
  }

  int Health() {
    grpc::ClientContext context;
    SetDeadline(&context);
    if (!channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
      std::fprintf(stderr, "error: UNAVAILABLE: cannot connect to %s\n",
                   absl::GetFlag(FLAGS_server).c_str());
      return 1;
    }
    std::printf("SERVING\n");
    return 0;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DocumentService::Stub> documents_;
  std::unique_ptr<v1::QueryService::Stub> queries_;
};

int Run(const std::vector<char*>& args) {
  if (args.size() < 2) return Usage("no command given");
  const std::string command = args[1];
  auto need = [&](size_t n) { return args.size() == n + 2; };
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  Client client(grpc::CreateCustomChannel(absl::GetFlag(FLAGS_server),
                                          grpc::InsecureChannelCredentials(), channel_args));
  if (command == "create" && need(1)) return client.Create(args[2]);
  if (command == "append" && need(2)) return client.AppendFile(args[2], args[3]);
  if (command == "ingest" && need(1)) return client.Ingest(args[2]);
  if (command == "get" && need(1)) return client.Get(args[2]);
  if (command == "list" && need(0)) return client.List();
  if (command == "delete" && need(1)) return client.Delete(args[2]);
  if (command == "watch" && need(1)) return client.Watch(args[2]);
  if (command == "ask" && need(2)) return client.Ask(args[2], args[3]);
  if (command == "health" && need(0)) return client.Health();
  return Usage(absl::StrCat("unknown command or wrong number of arguments: ", command));
}

}  // namespace
}  // namespace tome::cli

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Tome client.\n"
      "  tome [--server=HOST:PORT] [--json] COMMAND [ARGS]\n"
      "commands: create NAME | append DOC FILE|- | ingest FILE|- [--name=N] | get DOC | list |\n"
      "          delete DOC | watch DOC | ask DOC QUESTION | health");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  return tome::cli::Run(args);
}
