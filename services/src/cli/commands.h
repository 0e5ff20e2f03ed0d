// The CLI's commands. Each command file contributes a table; tome_main.cc dispatches.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cli/client.h"

namespace tome::cli {

using Args = std::vector<std::string>;  // positional arguments after the command name

struct Command {
  absl::string_view group;  // "" (documents, ask), "session" or "admin"
  absl::string_view name;
  absl::string_view args;  // usage of the positional arguments
  absl::string_view help;
  int min_args;
  int max_args;  // -1: any number
  int (*run)(Client& client, const Args& args);
};

std::vector<Command> DocumentCommands();  // create get list delete share watch health
std::vector<Command> IngestCommands();    // ingest append
std::vector<Command> QueryCommands();     // ask
std::vector<Command> SessionCommands();   // session create|get|list|fork|delete
std::vector<Command> AdminCommands();     // admin create-tenant|...|revoke-key

// Follows a document's ingestion with a progress bar on stderr (with --json, one
// IngestionProgress per line on stdout unless `quiet_json`). 0 when READY.
int WatchIngestion(Client& client, const std::string& document_id, bool quiet_json);

}  // namespace tome::cli
