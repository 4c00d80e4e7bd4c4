// hivemind-server: host experts. See docs/hosting.md, or run with --help.
//
// Signals (the handler only writes the signal number to a pipe; a dedicated thread acts on it, so
// the handling is async-signal-safe whichever thread the kernel picks, including LibTorch's and
// OpenBLAS's threads that exist before main()):
//   SIGTERM, SIGINT  drain (stop accepting, finish queued and in-flight batches, stop declaring,
//                    checkpoint) and exit 0 within --grace_period; a second one exits at once with
//                    status 1
//   SIGUSR1          checkpoint every expert now and keep serving
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <hivemind/common/blas_check.h>
#include <hivemind/common/logging.h>
#include <hivemind/server/command_line.h>
#include <hivemind/server/server.h>

namespace {

int g_signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int sig) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hivemind;
  if (Status logging = configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "hivemind-server: %s\n", logging.to_string().c_str());
    return 2;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  server::ParsedCommandLine parsed =
      server::parse_command_line(args, [](const std::string& name) -> std::optional<std::string> {
        const char* v = std::getenv(name.c_str());
        return v ? std::optional<std::string>(v) : std::nullopt;
      });
  if (parsed.exit_now) {
    std::fputs(parsed.output.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  for (const std::string& notice : parsed.notices)
    logger("server")->info("{}", notice);

  if (::pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    std::perror("hivemind-server: pipe2");
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1})
    ::sigaction(sig, &action, nullptr);

  auto created = server::Server::create(parsed.options);
  if (!created.is_ok()) {
    std::fprintf(stderr, "hivemind-server: cannot start: %s\n",
                 created.status().to_string().c_str());
    return created.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::unique_ptr<server::Server> server = std::move(created).value();
  warn_if_slow_blas();
  Status started = server->start();
  if (!started.is_ok()) {
    std::fprintf(stderr, "hivemind-server: cannot start: %s\n", started.to_string().c_str());
    return 1;
  }
  std::printf("hivemind-server ready: %zu expert(s) at %s%s%s%s%s\n", server->expert_uids().size(),
              server->address().c_str(), server->dht_address().empty() ? "" : ", DHT node ",
              server->dht_address().c_str(), server->metrics_address().empty() ? "" : ", metrics ",
              server->metrics_address().c_str());
  std::fflush(stdout);

  server::Server* raw = server.get();
  std::thread signal_thread([raw] {
    bool stopping = false;
    while (true) {
      unsigned char sig = 0;
      const ssize_t n = ::read(g_signal_pipe[0], &sig, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      if (sig == SIGUSR1) {
        logger("server")->info("SIGUSR1: checkpointing");
        raw->request_checkpoint();
      } else if (!stopping) {
        stopping = true;
        logger("server")->info("{}: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        raw->request_shutdown();
      } else {
        logger("server")->warn("second termination signal: exiting now");
        std::_Exit(1);
      }
    }
  });
  signal_thread.detach();  // blocked in sigwait until the process exits

  Status stopped = server->wait();
  server.reset();
  if (!stopped.is_ok()) {
    std::fprintf(stderr, "hivemind-server: stopped with an error: %s\n",
                 stopped.to_string().c_str());
    return 1;
  }
  std::printf("hivemind-server stopped\n");
  return 0;
}
