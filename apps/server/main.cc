// hivemind-server: host experts. See docs/hosting.md, or run with --help.
//
// Signals (a dedicated thread receives them; every other thread blocks them):
//   SIGTERM, SIGINT  drain (stop accepting, finish queued and in-flight batches, stop declaring, checkpoint)
//                    and exit 0 within --grace_period; a second one exits at once with status 1
//   SIGUSR1          checkpoint every expert now and keep serving
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <pthread.h>
#include <unistd.h>

#include <hivemind/common/blas_check.h>
#include <hivemind/common/logging.h>
#include <hivemind/runtime/server.h>

#include "cli.h"

int main(int argc, char** argv) {
  using namespace hivemind;
  configure_logging_from_env();
  std::vector<std::string> args(argv + 1, argv + argc);
  server_cli::Parsed parsed = server_cli::parse_command_line(args, [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  });
  if (parsed.exit_now) {
    std::fputs(parsed.output.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }

  // Block the signals before any thread exists, so only the signal thread below ever receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto created = runtime::Server::create(parsed.options);
  if (!created.is_ok()) {
    std::fprintf(stderr, "hivemind-server: cannot start: %s\n", created.status().to_string().c_str());
    return created.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::unique_ptr<runtime::Server> server = std::move(created).value();
  warn_if_slow_blas();
  Status started = server->start();
  if (!started.is_ok()) {
    std::fprintf(stderr, "hivemind-server: cannot start: %s\n", started.to_string().c_str());
    return 1;
  }
  std::printf("hivemind-server ready: %zu expert(s) at %s%s%s\n", server->expert_uids().size(),
              server->address().c_str(), server->dht_address().empty() ? "" : ", DHT node ",
              server->dht_address().c_str());
  std::fflush(stdout);

  runtime::Server* raw = server.get();
  std::thread signal_thread([raw, signals] {
    bool stopping = false;
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGUSR1) {
        logger("runtime")->info("SIGUSR1: checkpointing");
        raw->request_checkpoint();
      } else if (!stopping) {
        stopping = true;
        logger("runtime")->info("{}: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        raw->request_shutdown();
      } else {
        logger("runtime")->warn("second termination signal: exiting now");
        std::_Exit(1);
      }
    }
  });
  signal_thread.detach();  // blocked in sigwait until the process exits

  Status stopped = server->wait();
  server.reset();
  if (!stopped.is_ok()) {
    std::fprintf(stderr, "hivemind-server: stopped with an error: %s\n", stopped.to_string().c_str());
    return 1;
  }
  std::printf("hivemind-server stopped\n");
  return 0;
}
