#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hivemind/common/errno_text.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/metrics_http_server.h>

namespace hivemind {
namespace {

bool is_token_char(char c) {
  // RFC 9110 tchar.
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

int poll_timeout_ms(Milliseconds timeout) {
  return static_cast<int>(std::clamp<int64_t>(timeout.count(), 0, 60'000));
}

// The end of the head (index just past the blank line), or npos while incomplete.
size_t head_end(std::string_view bytes) {
  size_t crlf = bytes.find("\r\n\r\n");
  size_t lf = bytes.find("\n\n");
  size_t end = std::string_view::npos;
  if (crlf != std::string_view::npos) end = crlf + 4;
  if (lf != std::string_view::npos) end = std::min(end, lf + 2);
  return end;
}

std::string status_response(int code, std::string_view reason,
                            std::string_view extra_headers = {}) {
  std::string body = fmt::format("{} {}\n", code, reason);
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n"
      "{}Connection: close\r\n\r\n{}",
      code, reason, body.size(), extra_headers, body);
}

}  // namespace

Result<HttpRequestHead> parse_http_request_head(std::string_view bytes) {
  size_t end = head_end(bytes);
  if (end == std::string_view::npos) return protocol_error("http: incomplete request head");
  std::string_view head = bytes.substr(0, end);

  auto next_line = [&head]() {
    size_t lf = head.find('\n');
    std::string_view line = head.substr(0, lf);
    head.remove_prefix(lf == std::string_view::npos ? head.size() : lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  };

  std::string_view request_line = next_line();
  size_t sp1 = request_line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || request_line.find(' ', sp2 + 1) != std::string_view::npos) {
    return protocol_error("http: the request line is not 'METHOD TARGET VERSION'");
  }
  HttpRequestHead request;
  request.method = std::string(request_line.substr(0, sp1));
  request.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
  request.version = std::string(request_line.substr(sp2 + 1));
  if (request.method.empty() || request.method.size() > 16 ||
      !std::all_of(request.method.begin(), request.method.end(), is_token_char)) {
    return protocol_error("http: bad method");
  }
  if (request.target.empty() || request.target[0] != '/' ||
      !std::all_of(request.target.begin(), request.target.end(),
                   [](char c) { return c > ' ' && c <= '~'; })) {
    return protocol_error("http: bad request target");
  }
  if (request.version != "HTTP/1.1" && request.version != "HTTP/1.0") {
    return protocol_error("http: unsupported version");
  }
  while (true) {
    std::string_view line = next_line();
    if (line.empty()) break;  // the blank line that ends the head
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos ||
        !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon),
                     is_token_char)) {
      return protocol_error("http: bad header line");  // also rejects obsolete line folding
    }
    for (char c : line.substr(colon + 1)) {
      if ((c < ' ' && c != '\t') || c == 0x7f)
        return protocol_error("http: control character in a header");
    }
  }
  return request;
}

MetricsHttpServer::MetricsHttpServer(Renderer render, MetricsHttpServerOptions options)
    : render_(std::move(render)), options_(std::move(options)) {}

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::start(
    const MetricsRegistry& registry, MetricsHttpServerOptions options) {
  return start([&registry] { return registry.render(); }, std::move(options));
}

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::start(
    Renderer render, MetricsHttpServerOptions options) {
  if (!render) return invalid_argument_error("metrics http server: no renderer");
  if (options.max_request_bytes < 64) {
    return invalid_argument_error("metrics http server: max_request_bytes must be at least 64");
  }
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(std::move(render), std::move(options)));
  const auto& opts = server->options_;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port_text = std::to_string(opts.port);
  int gai = ::getaddrinfo(opts.bind_address.c_str(), port_text.c_str(), &hints, &found);
  if (gai != 0 || found == nullptr) {
    return invalid_argument_error(
        fmt::format("metrics http server: cannot resolve bind address '{}': {}", opts.bind_address,
                    gai_strerror(gai)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, ::freeaddrinfo);
  const std::string where = fmt::format("{} port {}", opts.bind_address, opts.port);

  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno_error("metrics http server: socket", errno);
  server->listen_fd_ = fd;  // closed by the destructor from here on
  int one = 1;
  // A restarted server must not wait out TIME_WAIT connections of its previous life.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
    return errno_error("metrics http server: bind " + where, errno);
  }
  if (::listen(fd, 16) != 0) return errno_error("metrics http server: listen " + where, errno);
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    return errno_error("metrics http server: getsockname", errno);
  }
  server->ipv6_ = bound.ss_family == AF_INET6;
  server->port_ = ntohs(server->ipv6_ ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                      : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0)
    return errno_error("metrics http server: pipe", errno);
  server->wake_read_ = pipe_fds[0];
  server->wake_write_ = pipe_fds[1];

  server->thread_ = std::thread([raw = server.get()] { raw->run(); });
  logger("common")->info("metrics: serving http://{}/metrics", server->address());
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  stop();
  for (int fd : {listen_fd_, wake_read_, wake_write_}) {
    if (fd >= 0) ::close(fd);
  }
}

void MetricsHttpServer::stop() {
  if (stopping_.exchange(true)) {
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    return;
  }
  if (wake_write_ >= 0) {
    char byte = 1;
    [[maybe_unused]] ssize_t n =
        ::write(wake_write_, &byte, 1);  // a full pipe already wakes the thread
  }
  if (thread_.joinable()) thread_.join();
  // Close the port now, not in the destructor: a stopped server must refuse connections, not queue
  // them.
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
}

std::string MetricsHttpServer::address() const {
  return ipv6_ ? fmt::format("[{}]:{}", options_.bind_address, port_)
               : fmt::format("{}:{}", options_.bind_address, port_);
}

void MetricsHttpServer::run() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    int ready = ::poll(fds, 2, poll_timeout_ms(options_.poll_interval));
    if (ready < 0 && errno != EINTR) {
      logger("common")->error("metrics: poll failed: {}", errno_text(errno));
      return;
    }
    if (ready <= 0 || stopping_.load() || (fds[1].revents & POLLIN)) continue;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (client < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: the listening socket stays readable, so pause instead of spinning.
        logger("common")->warn("metrics: accept failed: {}", errno_text(errno));
        pollfd wake = {wake_read_, POLLIN, 0};
        ::poll(&wake, 1, poll_timeout_ms(options_.poll_interval));
      }
      continue;
    }
    serve_connection(client);
    ::close(client);
  }
}

void MetricsHttpServer::serve_connection(int fd) {
  const Deadline deadline = Deadline::after(options_.client_timeout);
  // Waits until fd is ready for `events`, the deadline passes, or stop() is called.
  auto wait_for = [&](short events) {
    while (!stopping_.load() && !deadline.expired()) {
      pollfd fds[2] = {{fd, events, 0}, {wake_read_, POLLIN, 0}};
      Milliseconds slice = std::min(deadline.remaining(), options_.poll_interval);
      int ready = ::poll(fds, 2, poll_timeout_ms(slice));
      if (ready < 0 && errno != EINTR) return false;
      if (fds[1].revents & POLLIN) return false;
      if (ready > 0 && fds[0].revents != 0) return true;
    }
    return false;
  };

  std::string request;
  bool too_large = false;
  char buffer[2048];
  while (head_end(request) == std::string::npos) {
    if (request.size() >= options_.max_request_bytes) {
      too_large = true;
      break;
    }
    if (!wait_for(POLLIN)) return;  // timeout or stop: close without a response
    size_t room = std::min(sizeof(buffer), options_.max_request_bytes - request.size());
    ssize_t n = ::recv(fd, buffer, room, 0);
    if (n == 0) return;  // the client gave up
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return;
    }
    request.append(buffer, static_cast<size_t>(n));
  }

  std::string response = respond(request, too_large);
  std::string_view pending = response;
  while (!pending.empty()) {
    if (!wait_for(POLLOUT)) return;
    ssize_t n = ::send(fd, pending.data(), pending.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return;
    }
    pending.remove_prefix(static_cast<size_t>(n));
  }
  served_.fetch_add(1, std::memory_order_relaxed);
  // Lingering close: closing with unread bytes in the receive queue makes the kernel send a reset
  // that can destroy the response before the client reads it. Half-close, then drain until the
  // client closes (it does after a Connection: close response) or the deadline passes.
  ::shutdown(fd, SHUT_WR);
  size_t drained = 0;
  while (drained < 64 * 1024 && wait_for(POLLIN)) {
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      break;
    }
    drained += static_cast<size_t>(n);
  }
}

std::string MetricsHttpServer::respond(std::string_view request_bytes, bool too_large) {
  if (too_large) return status_response(431, "Request Header Fields Too Large");
  auto request = parse_http_request_head(request_bytes);
  if (!request.is_ok()) return status_response(400, "Bad Request");
  bool head = request->method == "HEAD";
  if (request->method != "GET" && !head) {
    return status_response(405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
  }
  std::string_view path = request->target;
  path = path.substr(0, path.find('?'));
  if (path != "/metrics") return status_response(404, "Not Found");
  std::string body;
  try {
    body = render_();
  } catch (const std::exception& e) {
    logger("common")->error("metrics: rendering failed: {}", e.what());
    return status_response(500, "Internal Server Error");
  }
  std::string response = fmt::format(
      "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
      kPrometheusContentType, body.size());
  if (!head) response += body;
  return response;
}

}  // namespace hivemind
