// `ingest` and `append`: a source tree (one section per file) or a book (one section per
// detected chapter), streamed to AppendText in pieces.
#include <cstdio>
#include <filesystem>

#include <google/protobuf/struct.pb.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cli/append_plan.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/ingest_tree.h"
#include "cli/output.h"
#include "cli/text_files.h"

namespace tome::cli {
namespace {

namespace fs = std::filesystem;

// What an append sends.
struct Source {
  bool is_tree = false;
  std::string root;     // tree: the directory
  TreeListing listing;  // tree: files and skipped paths
  std::string text;     // book: the whole text
  std::vector<Span> spans;
};

bool IsDirectory(const std::string& path) {
  std::error_code ec;
  return path != "-" && fs::is_directory(path, ec);
}

// Reads `path` into `source`; returns an exit code (0: ok).
int Load(const std::string& path, Source* source) {
  if (IsDirectory(path)) {
    TreeOptions options;
    options.max_file_bytes = absl::GetFlag(FLAGS_max_file_kb) * 1024;
    options.use_gitignore = absl::GetFlag(FLAGS_gitignore);
    options.excludes = absl::GetFlag(FLAGS_exclude);
    auto listing = ListTree(path, options);
    if (!listing.ok()) return Usage(std::string(listing.status().message()));
    source->is_tree = true;
    source->root = path;
    source->listing = *std::move(listing);
    return 0;
  }
  std::string error;
  if (!ReadFile(path, &source->text, &error)) return Usage("cannot read " + error);
  source->spans = BookSpans(source->text, absl::GetFlag(FLAGS_chapters));
  return 0;
}

void PrintSkipped(const Source& source) {
  for (const SkippedPath& s : source.listing.skipped) {
    std::fprintf(stderr, "skipped %s: %s\n", s.path.c_str(), s.reason.c_str());
  }
}

void PrintJsonObject(const std::vector<std::pair<std::string, google::protobuf::Value>>& fields) {
  google::protobuf::Struct object;
  for (const auto& [key, value] : fields) (*object.mutable_fields())[key] = value;
  PrintJson(object);
}

google::protobuf::Value StringValue(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  return v;
}

google::protobuf::Value NumberValue(double d) {
  google::protobuf::Value v;
  v.set_number_value(d);
  return v;
}

// --dry_run: the sections that would be sent (name and bytes of content) and what is
// skipped, without contacting the server.
int DryRun(const Source& source) {
  const bool json = absl::GetFlag(FLAGS_json);
  int64_t sections = 0, bytes = 0;
  auto section = [&](const std::string& name, int64_t n) {
    ++sections;
    bytes += n;
    if (json) {
      PrintJsonObject({{"section", StringValue(name)}, {"bytes", NumberValue(n)}});
    } else {
      const char* unnamed = source.spans.size() == 1 ? "(the whole text: no chapters detected)"
                                                     : "(text before the first chapter)";
      std::printf("%10lld  %s\n", static_cast<long long>(n), name.empty() ? unnamed : name.c_str());
    }
  };
  if (source.is_tree) {
    for (const TreeFile& f : source.listing.files) section(f.path, f.bytes);
    for (const SkippedPath& s : source.listing.skipped) {
      if (json) {
        PrintJsonObject({{"skipped", StringValue(s.path)}, {"reason", StringValue(s.reason)}});
      } else {
        std::printf("   skipped  %s: %s\n", s.path.c_str(), s.reason.c_str());
      }
    }
  } else {
    for (const Span& s : source.spans) section(s.name, static_cast<int64_t>(s.end - s.begin));
  }
  if (!json) {
    std::printf("%lld section%s, %s%s\n", static_cast<long long>(sections),
                sections == 1 ? "" : "s", Bytes(bytes).c_str(),
                source.is_tree
                    ? absl::StrCat(", ", source.listing.skipped.size(), " skipped").c_str()
                    : "");
  }
  return 0;
}

// Streams `source` to AppendText as one call. `*sections` counts named sections sent.
grpc::Status Send(Client& client, const std::string& id, const Source& source,
                  v1::AppendTextResponse* response, int* sections) {
  auto context = client.Context();
  auto writer = client.documents().AppendText(context.get(), response);
  const bool verbose = absl::GetFlag(FLAGS_verbose);
  bool first = true;
  *sections = 0;
  auto emit = [&](absl::string_view section, absl::string_view piece) {
    v1::AppendTextRequest request;
    if (first) request.set_document_id(id);
    first = false;
    request.set_text(piece.data(), piece.size());
    if (!section.empty()) {
      request.set_section(section.data(), section.size());
      ++*sections;
    }
    return writer->Write(request);
  };
  bool ok = true;
  if (source.is_tree) {
    for (const TreeFile& f : source.listing.files) {
      std::string content, error;
      if (!ReadFile(source.root + "/" + f.path, &content, &error) ||
          !BinaryReason(content).empty()) {
        // Changed since it was listed; the rest still goes.
        std::fprintf(stderr, "skipped %s: changed while ingesting\n", f.path.c_str());
        continue;
      }
      if (verbose) std::fprintf(stderr, "sending %s (%zu bytes)\n", f.path.c_str(), content.size());
      ok = ForEachPiece(f.path, FileSectionText(f.path, content), kPieceBytes, emit);
      if (!ok) break;
    }
  } else {
    const absl::string_view text = source.text;
    for (const Span& s : source.spans) {
      if (verbose && !s.name.empty()) {
        std::fprintf(stderr, "section %s (%zu bytes)\n", s.name.c_str(), s.end - s.begin);
      }
      ok = ForEachPiece(s.name, ChapterSectionText(s.name, text.substr(s.begin, s.end - s.begin)),
                        kPieceBytes, emit);
      if (!ok) break;
    }
  }
  if (ok) writer->WritesDone();  // after a failed Write, Finish reports why
  return writer->Finish();
}

std::string DefaultName(const std::string& path) {
  if (path == "-") return "stdin";
  fs::path p = fs::path(path).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
  std::string name = p.filename().string();
  if (name.empty() || name == "." || name == "..") {
    std::error_code ec;
    name = fs::absolute(p, ec).lexically_normal().filename().string();
  }
  return name.empty() ? path : name;
}

int Append(Client& client, const Args& args) {
  Source source;
  if (int rc = Load(args[1], &source); rc != 0) return rc;
  if (absl::GetFlag(FLAGS_dry_run)) return DryRun(source);
  if (absl::GetFlag(FLAGS_verbose)) PrintSkipped(source);
  if (source.is_tree && source.listing.files.empty()) {
    return Error("no text files to send under " + args[1]);
  }
  v1::AppendTextResponse response;
  int sections = 0;
  grpc::Status status = Send(client, args[0], source, &response, &sections);
  if (!status.ok()) return Fail(status);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
  } else {
    std::printf("appended %lld bytes (%lld tokens, %d sections) to document %s, now version "
                "%lld\n",
                static_cast<long long>(response.appended_bytes()),
                static_cast<long long>(response.appended_tokens()), sections, args[0].c_str(),
                static_cast<long long>(response.document().version()));
  }
  return 0;
}

int Ingest(Client& client, const Args& args) {
  const std::string& path = args[0];
  Source source;
  if (int rc = Load(path, &source); rc != 0) return rc;
  if (absl::GetFlag(FLAGS_dry_run)) return DryRun(source);
  if (absl::GetFlag(FLAGS_verbose)) PrintSkipped(source);
  if (source.is_tree && source.listing.files.empty()) {
    return Error(absl::StrCat("no text files to ingest under ", path, " (",
                              source.listing.skipped.size(), " skipped; --verbose lists them)"));
  }
  std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty()) name = DefaultName(path);
  v1::CreateDocumentRequest create;
  create.set_name(name);
  v1::Document document;
  grpc::Status status =
      client.documents().CreateDocument(client.Context().get(), create, &document);
  if (!status.ok()) return Fail(status);
  v1::AppendTextResponse response;
  int sections = 0;
  status = Send(client, document.id(), source, &response, &sections);
  if (!status.ok()) {
    // Leave nothing behind: the document would stay empty.
    v1::DeleteDocumentRequest del;
    del.set_document_id(document.id());
    v1::DeleteDocumentResponse ignored;
    (void)client.documents().DeleteDocument(client.Context().get(), del, &ignored);
    return Fail(status);
  }
  if (!absl::GetFlag(FLAGS_json)) {
    std::string skipped;
    if (source.is_tree && !source.listing.skipped.empty()) {
      skipped = absl::StrCat(", ", source.listing.skipped.size(), " paths skipped",
                             absl::GetFlag(FLAGS_verbose) ? "" : " (--verbose lists them)");
    }
    std::printf("document %s: %lld bytes, %lld tokens, %d sections%s\n", document.id().c_str(),
                static_cast<long long>(response.appended_bytes()),
                static_cast<long long>(response.appended_tokens()), sections, skipped.c_str());
    std::fflush(stdout);
  }
  if (absl::GetFlag(FLAGS_wait)) {
    if (int rc = WatchIngestion(client, document.id(), /*quiet_json=*/true); rc != 0) return rc;
  }
  v1::GetDocumentRequest get;
  get.set_document_id(document.id());
  status = client.documents().GetDocument(client.Context().get(), get, &document);
  if (!status.ok()) return Fail(status);
  PrintDocument(document);
  return 0;
}

}  // namespace

std::vector<Command> IngestCommands() {
  return {
      {"", "ingest", "PATH|-",
       "create a document from a directory (one section per text file, .gitignore honoured) or "
       "a file/stdin (one section per detected chapter), then show progress until ready",
       1, 1, Ingest},
      {"", "append", "DOC PATH|-",
       "append a directory, a file or stdin to a document (a new version)", 2, 2, Append},
  };
}

}  // namespace tome::cli
