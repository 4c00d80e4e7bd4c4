#include "transport/baselines.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <link.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace hivemind::bench::transport_baselines {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<char*> make_env(const std::string& tls, const std::vector<std::string>& extra_env,
                            std::vector<std::string>& storage) {
  storage.clear();
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "UCX_TLS=", 8) != 0) storage.emplace_back(*e);
  }
  storage.insert(storage.end(), extra_env.begin(), extra_env.end());
  if (!tls.empty())
    storage.push_back("UCX_TLS=" + tls);  // empty: the environment's (or UCX's) choice
  std::vector<char*> env;
  for (auto& s : storage)
    env.push_back(s.data());
  env.push_back(nullptr);
  return env;
}

pid_t spawn(const std::vector<std::string>& args, const std::string& tls,
            const std::vector<std::string>& extra_env, int out_fd) {
  std::vector<std::string> storage;
  auto env = make_env(tls, extra_env, storage);
  std::vector<std::string> a = args;
  std::vector<char*> argv;
  for (auto& s : a)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (out_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  }
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0].c_str(), &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(n));
  return out;
}

int connect_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) return -1;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// A listening socket on 127.0.0.1 with a kernel-chosen port.
int listen_loopback(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  ::listen(fd, 1);
  socklen_t len = sizeof(sin);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  *port = ntohs(sin.sin_port);
  return fd;
}

bool read_exact(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}
bool write_exact(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

std::string ucx_perftest_program() {
  // The baseline must be the perftest of the UCX this process runs on: with a UCX built from source
  // next to Debian's, the one on PATH would measure the other library. The loaded libucp's folder
  // says which installation that is (<prefix>/lib/libucp.so.0 -> <prefix>/bin/ucx_perftest).
  std::string libucp;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        const char* name = info->dlpi_name;
        if (name != nullptr && std::strstr(name, "/libucp.so") != nullptr) {
          *static_cast<std::string*>(out) = name;
          return 1;
        }
        return 0;
      },
      &libucp);
  if (!libucp.empty()) {
    std::string lib_dir = libucp.substr(0, libucp.rfind('/'));
    std::string candidate = lib_dir.substr(0, lib_dir.rfind('/')) + "/bin/ucx_perftest";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "ucx_perftest";  // Debian's layout (/usr/lib/<triplet>, /usr/bin): found on PATH
}

std::optional<double> ucx_perftest(const std::string& test, const std::string& tls, size_t bytes,
                                   int iters, int warmup, int port, std::string* why,
                                   const PerftestVariant& variant) {
  const std::string program = ucx_perftest_program();
  int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  pid_t server = spawn({program, "-p", std::to_string(port)}, tls, variant.env, devnull);
  if (devnull >= 0) ::close(devnull);
  if (server < 0) {
    if (why) *why = "ucx_perftest not found";
    return std::nullopt;
  }
  int pipefd[2];
  if (::pipe(pipefd) != 0) return std::nullopt;
  std::optional<double> result;
  for (int attempt = 0; attempt < 50 && !result; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the server binds its port
    int out[2];
    if (::pipe(out) != 0) break;
    std::vector<std::string> args{
        program, "127.0.0.1",           "-p", std::to_string(port),  "-t", test,
        "-s",    std::to_string(bytes), "-n", std::to_string(iters), "-w", std::to_string(warmup),
        "-f"};
    args.insert(args.end(), variant.args.begin(), variant.args.end());
    pid_t client = spawn(args, tls, variant.env, out[1]);
    ::close(out[1]);
    std::string text = read_all(out[0]);
    ::close(out[0]);
    int status = 0;
    ::waitpid(client, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (text.find("Connection refused") != std::string::npos ||
          text.find("connect") != std::string::npos)
        continue;
      if (why) *why = "ucx_perftest failed: " + text.substr(0, 200);
      break;
    }
    // The final result row: iterations, p50, avg lat, overall lat, avg MB/s, overall MB/s, ...
    std::istringstream lines(text);
    std::string line, last;
    while (std::getline(lines, line)) {
      auto first = line.find_first_not_of(' ');
      if (first != std::string::npos && std::isdigit(static_cast<unsigned char>(line[first])))
        last = line;
    }
    // strtod, not operator>>: perftest prints "inf" in columns it could not compute.
    std::istringstream row(last);
    std::vector<double> v;
    std::string token;
    while (row >> token)
      v.push_back(std::strtod(token.c_str(), nullptr));
    if (v.size() >= 6)
      result = test == "ucp_am_lat" ? v[3] : v[5];
    else if (why)
      *why = "could not parse ucx_perftest output: " +
             text.substr(text.size() > 300 ? text.size() - 300 : 0);
    break;
  }
  ::close(pipefd[0]);
  ::close(pipefd[1]);
  ::kill(server, SIGKILL);
  int status;
  ::waitpid(server, &status, 0);
  return result;
}

double raw_tcp_half_rtt_us(size_t bytes, int iters) {
  uint16_t port = 0;
  int lfd = listen_loopback(&port);
  std::thread echo([lfd, bytes, iters] {
    int fd = ::accept(lfd, nullptr, nullptr);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::vector<uint8_t> buf(std::max<size_t>(bytes, 1));
    for (int i = 0; i < iters; ++i) {
      if (!read_exact(fd, buf.data(), bytes) || !write_exact(fd, buf.data(), bytes)) break;
    }
    ::close(fd);
  });
  int fd = connect_loopback(port);
  std::vector<uint8_t> buf(std::max<size_t>(bytes, 1), 1);
  int warm = std::max(1, iters / 10);
  Clock::time_point start;
  for (int i = 0; i < iters; ++i) {
    if (i == warm) start = Clock::now();
    write_exact(fd, buf.data(), bytes);
    read_exact(fd, buf.data(), bytes);
  }
  double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  ::close(fd);
  echo.join();
  ::close(lfd);
  return us / (iters - warm) / 2;
}

double raw_tcp_stream_MBps(size_t bytes, int iters) {
  uint16_t port = 0;
  int lfd = listen_loopback(&port);
  std::thread sink([lfd, bytes, iters] {
    int fd = ::accept(lfd, nullptr, nullptr);
    std::vector<uint8_t> buf(std::max<size_t>(bytes, 1));
    for (int i = 0; i < iters; ++i) {
      if (!read_exact(fd, buf.data(), bytes)) break;
    }
    uint8_t ack = 1;
    write_exact(fd, &ack, 1);
    ::close(fd);
  });
  int fd = connect_loopback(port);
  std::vector<uint8_t> buf(std::max<size_t>(bytes, 1), 1);
  auto start = Clock::now();
  for (int i = 0; i < iters; ++i)
    write_exact(fd, buf.data(), bytes);
  uint8_t ack;
  read_exact(fd, &ack, 1);
  double s = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  sink.join();
  ::close(lfd);
  return static_cast<double>(bytes) * iters / s / 1e6;
}

long rss_kB() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long v = 0;
      in >> v;
      return v;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

}  // namespace hivemind::bench::transport_baselines
