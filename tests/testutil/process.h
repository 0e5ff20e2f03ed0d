// Runs a child process (a real tomed) for integration tests.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace tome::testing {

class ChildProcess {
 public:
  // Starts `argv[0]` with `argv`; stdout/stderr go to `log_path` (appended).
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~ChildProcess();  // SIGKILLs if still running

  pid_t pid() const { return pid_; }
  // Sends `signal`, waits for exit and returns the exit status (waitpid form).
  int Stop(int signal);
  bool running();

 private:
  pid_t pid_ = -1;
};

// Waits (up to `timeout_s`) until `path` holds a port number; returns it, or -1.
int WaitForPortFile(const std::string& path, double timeout_s);

// Runs a command to completion, returning its exit code; stdout in `out`.
int RunCommand(const std::vector<std::string>& argv, std::string* out);

}  // namespace tome::testing
