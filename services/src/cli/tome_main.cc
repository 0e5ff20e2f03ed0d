// tome: command-line client of a tomed server. Covers every RPC of the tome.v1 API with
// human output and --json. `tome --help` (or `tome help`) lists the commands; docs/CLI.md
// has an example of each.
//
// Exit codes: 0 success, 1 RPC or other runtime error ("error: CODE: message" on stderr),
// 2 usage error.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/credentials.h"
#include "cli/flags.h"
#include "tome/services/tls.h"

namespace tome::cli {
namespace {

std::vector<Command> AllCommands() {
  std::vector<Command> all;
  for (auto table : {IngestCommands, DocumentCommands, QueryCommands, SessionCommands,
                     AdminCommands}) {
    for (const Command& c : table()) all.push_back(c);
  }
  return all;
}

std::string CommandLine(const Command& c) {
  return absl::StrCat(c.group, c.group.empty() ? "" : " ", c.name, c.args.empty() ? "" : " ",
                      c.args);
}

std::string UsageText() {
  std::string text =
      "Tome client.\n"
      "  tome [--server=HOST:PORT] [--api_key=KEY] [--json] COMMAND [ARGS] [FLAGS]\n\n"
      "Commands:\n";
  for (const Command& c : AllCommands()) {
    absl::StrAppendFormat(&text, "  %s\n", CommandLine(c));
    // The description below, wrapped at 100 columns.
    std::string line = "      ";
    for (absl::string_view word : absl::StrSplit(c.help, ' ', absl::SkipEmpty())) {
      if (line.size() + 1 + word.size() > 100) {
        absl::StrAppend(&text, line, "\n");
        line = "      ";
      }
      absl::StrAppend(&line, line.size() > 6 ? " " : "", word);
    }
    absl::StrAppend(&text, line, "\n");
  }
  absl::StrAppend(&text,
                  "\nThe API key goes as `authorization: Bearer KEY` on every call: --api_key,\n"
                  "else $TOME_API_KEY, else the file --api_key_file. Admin commands use\n"
                  "--admin_key / $TOME_ADMIN_KEY / --admin_key_file. Examples: docs/CLI.md.\n"
                  "Exit codes: 0 ok, 1 error (RPC status code and message on stderr), 2 usage.");
  return text;
}

int Run(const std::vector<char*>& argv) {
  std::vector<std::string> words(argv.begin() + 1, argv.end());
  if (words.empty()) return Usage("no command given");
  if (words[0] == "help") {
    std::printf("%s\n", UsageText().c_str());
    return 0;
  }
  std::string group;
  if (words[0] == "session" || words[0] == "sessions") group = "session";
  if (words[0] == "admin") group = "admin";
  if (!group.empty()) {
    words.erase(words.begin());
    if (words.empty()) return Usage(absl::StrCat("`tome ", group, "` needs a subcommand"));
  }
  const Command* command = nullptr;
  const std::vector<Command> all = AllCommands();
  for (const Command& c : all) {
    if (c.group == group && c.name == words[0]) command = &c;
  }
  if (command == nullptr) {
    return Usage(absl::StrCat("unknown command: ", group, group.empty() ? "" : " ", words[0]));
  }
  const Args args(words.begin() + 1, words.end());
  const int n = static_cast<int>(args.size());
  if (n < command->min_args || (command->max_args >= 0 && n > command->max_args)) {
    return Usage(absl::StrCat("usage: tome ", CommandLine(*command)));
  }

  auto api_key = ResolveKey(absl::GetFlag(FLAGS_api_key), "TOME_API_KEY",
                            absl::GetFlag(FLAGS_api_key_file), "api_key");
  if (!api_key.ok()) return Usage(std::string(api_key.status().message()));
  std::string admin_key;
  if (group == "admin") {
    auto key = ResolveKey(absl::GetFlag(FLAGS_admin_key), "TOME_ADMIN_KEY",
                          absl::GetFlag(FLAGS_admin_key_file), "admin_key");
    if (!key.ok()) return Usage(std::string(key.status().message()));
    if (key->empty()) {
      return Usage("admin commands need the admin key: --admin_key, $TOME_ADMIN_KEY or "
                   "--admin_key_file (tomed writes it to <data_dir>/bootstrap-credentials)");
    }
    admin_key = *std::move(key);
  }
  services::ClientTlsOptions tls;
  tls.enabled = absl::GetFlag(FLAGS_tls);
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = services::NewChannel(absl::GetFlag(FLAGS_server), tls, channel_args);
  if (!channel.ok()) return Usage(std::string(channel.status().message()));
  Client client(*std::move(channel), *std::move(api_key), std::move(admin_key));
  return command->run(client, args);
}

}  // namespace
}  // namespace tome::cli

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(tome::cli::UsageText());
  std::vector<std::string> storage;
  std::vector<char*> rewritten = tome::cli::PreprocessArgs(argc, argv, &storage);
  std::vector<char*> args =
      absl::ParseCommandLine(static_cast<int>(rewritten.size()), rewritten.data());
  return tome::cli::Run(args);
}
