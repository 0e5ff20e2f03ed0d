// `ask`: a question about a document (or within a session); the answer streams as it is
// generated, then its sources (citations) and timings.
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/output.h"
#include "cli/text_files.h"

namespace tome::cli {
namespace {

int Ask(Client& client, const Args& args) {
  const std::string session = absl::GetFlag(FLAGS_session);
  v1::AskRequest request;
  std::string question;
  if (!session.empty()) {
    if (args.size() != 1) return Usage("with --session=ID, give only the QUESTION");
    if (absl::GetFlag(FLAGS_doc_version) != 0) {
      return Usage("--version applies to DOC; a session is on a fixed version");
    }
    request.set_session_id(session);
    question = args[0];
  } else {
    if (args.size() != 2) return Usage("usage: tome ask DOC QUESTION (or --session=ID QUESTION)");
    request.set_document_id(args[0]);
    request.set_version(absl::GetFlag(FLAGS_doc_version));
    question = args[1];
  }
  if (question == "-") {
    std::string error;
    if (!ReadFile("-", &question, &error)) return Usage("cannot read the question: " + error);
  }
  request.set_question(question);
  request.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  request.set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  request.set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  request.set_seed(absl::GetFlag(FLAGS_seed));
  request.set_max_citations(absl::GetFlag(FLAGS_max_citations));
  request.set_no_citations(absl::GetFlag(FLAGS_no_citations));

  auto context = client.Context();
  auto reader = client.queries().Ask(context.get(), request);
  v1::AskResponse response;
  const bool json = absl::GetFlag(FLAGS_json);
  bool streamed = false;
  while (reader->Read(&response)) {
    if (response.has_delta() && !json) {
      std::fputs(response.delta().text().c_str(), stdout);
      std::fflush(stdout);
      streamed = true;
    } else if (response.has_summary()) {
      if (json) {
        PrintJson(response.summary());
      } else {
        PrintSummary(response.summary());
        streamed = false;
      }
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    if (streamed) std::printf("\n");
    std::fflush(stdout);
    return Fail(status);
  }
  return 0;
}

}  // namespace

std::vector<Command> QueryCommands() {
  return {
      {"", "ask", "DOC QUESTION | --session=ID QUESTION",
       "ask a question (QUESTION `-`: read stdin); the answer streams, then its sources "
       "(section, lines, snippet) and timings. --version=N asks about an older version",
       1, 2, Ask},
  };
}

}  // namespace tome::cli
