// Document commands: create, get, list, delete, reingest, share, watch, health.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/output.h"

namespace tome::cli {
namespace {

int Create(Client& client, const Args& args) {
  v1::CreateDocumentRequest request;
  request.set_name(args[0]);
  v1::Document document;
  grpc::Status status =
      client.documents().CreateDocument(client.Context().get(), request, &document);
  if (!status.ok()) return Fail(status);
  PrintDocument(document);
  return 0;
}

int Get(Client& client, const Args& args) {
  v1::GetDocumentRequest request;
  request.set_document_id(args[0]);
  v1::Document document;
  grpc::Status status = client.documents().GetDocument(client.Context().get(), request, &document);
  if (!status.ok()) return Fail(status);
  PrintDocument(document);
  return 0;
}

int List(Client& client, const Args&) {
  const bool include_shared = absl::GetFlag(FLAGS_include_shared);
  std::string token;
  bool any = false;
  do {
    v1::ListDocumentsRequest request;
    request.set_page_token(token);
    request.set_include_shared(include_shared);
    v1::ListDocumentsResponse response;
    grpc::Status status =
        client.documents().ListDocuments(client.Context().get(), request, &response);
    if (!status.ok()) return Fail(status);
    for (const v1::Document& d : response.documents()) {
      PrintDocumentRow(d, !any, include_shared);
      any = true;
    }
    token = response.next_page_token();
  } while (!token.empty());
  if (!any && !absl::GetFlag(FLAGS_json)) std::printf("no documents\n");
  return 0;
}

int Delete(Client& client, const Args& args) {
  v1::DeleteDocumentRequest request;
  request.set_document_id(args[0]);
  v1::DeleteDocumentResponse response;
  grpc::Status status =
      client.documents().DeleteDocument(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
  } else {
    std::printf("deleted document %s\n", args[0].c_str());
  }
  return 0;
}

int Share(Client& client, const Args& args) {
  v1::ShareDocumentRequest request;
  request.set_document_id(args[0]);
  for (size_t i = 1; i < args.size(); ++i) request.add_tenant_ids(args[i]);
  request.set_public_(absl::GetFlag(FLAGS_public));
  v1::Document document;
  grpc::Status status =
      client.documents().ShareDocument(client.Context().get(), request, &document);
  if (!status.ok()) return Fail(status);
  if (!absl::GetFlag(FLAGS_json) && !document.public_() &&
      document.shared_with_tenant_ids_size() == 0) {
    std::printf("document %s is private\n", document.id().c_str());
    return 0;
  }
  PrintDocument(document);
  return 0;
}

int Watch(Client& client, const Args& args) { return WatchIngestion(client, args[0], false); }

// Recomputes a FAILED document's state from its stored text, then (--wait) shows progress.
int Reingest(Client& client, const Args& args) {
  v1::ReingestDocumentRequest request;
  request.set_document_id(args[0]);
  v1::Document document;
  grpc::Status status =
      client.documents().ReingestDocument(client.Context().get(), request, &document);
  if (!status.ok()) return Fail(status);
  PrintDocument(document);
  return absl::GetFlag(FLAGS_wait) ? WatchIngestion(client, args[0], true) : 0;
}

int Health(Client& client, const Args&) {
  if (!client.channel().WaitForConnected(std::chrono::system_clock::now() +
                                         std::chrono::seconds(5))) {
    std::fprintf(stderr, "error: UNAVAILABLE: cannot connect to %s\n",
                 absl::GetFlag(FLAGS_server).c_str());
    return 1;
  }
  std::printf("SERVING\n");
  return 0;
}

}  // namespace

int WatchIngestion(Client& client, const std::string& document_id, bool quiet_json) {
  auto context = client.Context();
  v1::WatchIngestionRequest request;
  request.set_document_id(document_id);
  auto reader = client.documents().WatchIngestion(context.get(), request);
  v1::IngestionProgress progress;
  ProgressBar bar(isatty(fileno(stderr)));
  const bool json = absl::GetFlag(FLAGS_json);
  bool failed = false;
  while (reader->Read(&progress)) {
    if (json) {
      if (!quiet_json) PrintJson(progress);
    } else {
      bar.Update(progress);
    }
    failed = progress.status() == v1::DOCUMENT_STATUS_FAILED;
  }
  bar.Done();
  grpc::Status status = reader->Finish();
  if (!status.ok()) return Fail(status);
  if (failed) return Error("ingestion failed: " + progress.error());
  return 0;
}

std::vector<Command> DocumentCommands() {
  return {
      {"", "create", "NAME", "create an empty document, print it", 1, 1, Create},
      {"", "get", "DOC", "show a document", 1, 1, Get},
      {"", "list", "", "list your documents (--include_shared: and those shared with you)", 0, 0,
       List},
      {"", "delete", "DOC", "delete a document and everything stored for it", 1, 1, Delete},
      {"", "reingest", "DOC",
       "recompute a FAILED document's model state from its stored text (--wait: show progress)",
       1, 1, Reingest},
      {"", "share", "DOC [TENANT_ID...]",
       "share a document read-only with exactly these tenants (--public: with everyone; no "
       "tenants and no --public: private again)",
       1, -1, Share},
      {"", "watch", "DOC", "follow a document's ingestion (progress bar, tokens/s, ETA)", 1, 1,
       Watch},
      {"", "health", "", "check that the server is reachable", 0, 0, Health},
  };
}

}  // namespace tome::cli
