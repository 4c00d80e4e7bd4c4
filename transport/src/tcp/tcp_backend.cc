#include "tcp/tcp_backend.h"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hivemind/common/errno_text.h>
#include <hivemind/common/logging.h>

#include "ipv4_resolution.h"
#include "tcp/tcp_endpoint.h"

namespace hivemind::transport {
namespace {

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string format_peer(const sockaddr_in& sin) {
  char text[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text));
  return fmt::format("tcp://{}:{}", text, ntohs(sin.sin_port));
}

class TcpListener final : public ListenerBase, public FdHandler {
 public:
  TcpListener(Worker::Impl& worker, int fd, AcceptCallback on_accept)
      : ListenerBase(worker), fd_(fd), on_accept_(std::move(on_accept)) {}
  ~TcpListener() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status start(const Address& bound) {
    sockaddr_in sin{};
    socklen_t len = sizeof(sin);
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len) != 0)
      return errno_error("getsockname", errno);
    HIVEMIND_ASSIGN_OR_RETURN(std::string host,
                              announce_host(bound.host, worker_.context->options().iface));
    address_ = fmt::format("tcp://{}:{}", host, ntohs(sin.sin_port));
    token_ = worker_.add_fd(fd_, EPOLLIN | EPOLLET, this);
    if (token_ == 0) return errno_error("epoll_ctl", errno);
    return Status::ok();
  }

  void on_fd_events(uint32_t) override {
    auto self = shared_from_this();
    while (!closed_) {
      sockaddr_in peer{};
      socklen_t len = sizeof(peer);
      int fd =
          ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          logger("transport")->warn("accept on {}: {}", address_, errno_text(errno));
        }
        return;
      }
      set_nodelay(fd);
      auto ep = std::make_shared<TcpEndpoint>(worker_, fd, format_peer(peer), false);
      worker_.endpoints.insert(ep);
      ep->set_callbacks(on_accept_(ep));
      ep->start();
    }
  }

 private:
  void close_on_loop() override {
    if (token_ != 0) worker_.remove_fd(fd_, token_);
    token_ = 0;
    ::close(fd_);
    fd_ = -1;
    on_accept_ = nullptr;
  }

  int fd_;
  uint64_t token_ = 0;
  AcceptCallback on_accept_;
};

}  // namespace

Result<std::shared_ptr<Endpoint>> tcp_connect(Worker::Impl& worker, const Address& address,
                                              EndpointCallbacks callbacks) {
  HIVEMIND_ASSIGN_OR_RETURN(sockaddr_in sin, detail::resolve_ipv4(address));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error("socket", errno);
  set_nodelay(fd);
  bool connecting = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
    if (errno != EINPROGRESS) {
      int err = errno;
      ::close(fd);
      return unavailable_error(
          fmt::format("connect to tcp://{}:{}: {}", address.host, address.port, errno_text(err)));
    }
    connecting = true;
  }
  auto ep = std::make_shared<TcpEndpoint>(
      worker, fd, fmt::format("tcp://{}:{}", address.host, address.port), connecting);
  ep->set_callbacks(std::move(callbacks));
  worker.endpoints.insert(ep);
  ep->start();
  return std::shared_ptr<Endpoint>(ep);
}

Result<std::shared_ptr<Listener>> tcp_listen(Worker::Impl& worker, const Address& address,
                                             AcceptCallback on_accept) {
  HIVEMIND_ASSIGN_OR_RETURN(sockaddr_in sin, detail::resolve_ipv4(address));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error("socket", errno);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 || ::listen(fd, 1024) != 0) {
    int err = errno;
    ::close(fd);
    return errno_error(fmt::format("listen on {}", address.to_string()), err);
  }
  auto listener = std::make_shared<TcpListener>(worker, fd, std::move(on_accept));
  Status st = listener->start(address);
  if (!st.is_ok()) return st;
  worker.listeners.insert(listener);
  return std::shared_ptr<Listener>(listener);
}

}  // namespace hivemind::transport
