// tomed's cluster roles (--role=router|worker), kept out of tomed_main.cc: the flags they
// add and the run loops. The default role, single, is today's one-process server.
#pragma once

#include <signal.h>

#include <string>

#include "tome/services/server.h"

namespace tome::services::cluster {

// Runs tomed in the role --role names until SIGINT/SIGTERM (already blocked in `signals`)
// and returns the exit code; returns -1 for --role=single (the caller runs as before).
// `options` holds the parsed single-process flags; `port_file` as tomed's --port_file.
int RunClusterRole(const ServerOptions& options, const std::string& port_file,
                   const sigset_t& signals);

}  // namespace tome::services::cluster
