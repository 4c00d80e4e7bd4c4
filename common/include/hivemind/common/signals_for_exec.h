// What a forked child resets before exec: used by spawn.h's SpawnedGroup and by the harness's
// ChildProcess, and by any program that forks and execs a helper itself. Inline, so that the child
// calls nothing through the dynamic linker between fork and exec.
#pragma once

#include <signal.h>

namespace hivemind {

// A child inherits the forking thread's signal mask, and ignored signals stay ignored across exec:
// a started program must see SIGTERM, SIGINT and SIGPIPE like any program. Async-signal-safe, for
// the window between fork and exec.
inline void restore_default_signals() {
  sigset_t none;
  sigemptyset(&none);
  // Between fork and exec the child has one thread, so the process-wide call is the right one.
  ::sigprocmask(SIG_SETMASK, &none, nullptr);  // NOLINT(concurrency-mt-unsafe)
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int signal : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD, SIGQUIT}) {
    ::sigaction(signal, &default_action, nullptr);
  }
}

}  // namespace hivemind
