// A minimal HTTP/1.1 server for Prometheus scrapes: GET (or HEAD) /metrics, 404 for anything else.
//
// Why not prometheus-cpp's Exposer, which exposes everything else of our metrics: Debian 12's
// civetweb (under the Exposer) starts its threads with a fixed 100 KiB stack, and glibc refuses
// such a thread (pthread_create: EINVAL) in any process whose static TLS is larger, which every
// process loading LibTorch with OpenBLAS is (OpenBLAS 60 KiB, glog 30 KiB, libtorch_cpu 10 KiB,
// ...): the Exposer cannot start in an expert server or a trainer. So the HTTP side stays this
// small server.
//
// One thread, plain sockets, one connection at a time, one request per connection (Connection:
// close): a scrape every few seconds needs nothing more, and it keeps the attack surface of a port
// that may be reachable from a cluster network small. Every wait is a poll() with a timeout, and
// stop() wakes the thread through a pipe, so stop() returns promptly even while a client holds a
// connection open. Requests are bounded (`max_request_bytes` for the head, `client_timeout` to send
// it); bodies are never read.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include <hivemind/common/clock.h>
#include <hivemind/common/metrics.h>
#include <hivemind/common/result.h>

namespace hivemind {

// Content-Type of the responses: MetricsRegistry::render() writes the text exposition format 0.0.4.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

struct MetricsHttpServerOptions {
  // Loopback by default: exposing metrics beyond the host is a decision ("0.0.0.0" or an
  // interface's address). Numeric IPv4 or IPv6 address, or a name resolved once at start.
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;  // 0: the kernel picks one; see port()
  size_t max_request_bytes = 8 * 1024;
  // A client must send its whole request head, and take the whole response, within this time.
  Milliseconds client_timeout{5000};
  // Upper bound on how long the thread sleeps in poll() between checks of the stop flag (the stop
  // pipe normally wakes it at once).
  Milliseconds poll_interval{200};
};

// The parts of a request head the server uses.
struct HttpRequestHead {
  std::string method;
  std::string target;   // "/metrics?x=1" as sent
  std::string version;  // "HTTP/1.1"
};

// Parses a request head that ends with an empty line ("\r\n\r\n", or bare "\n\n"). Protocol error
// on anything that is not "METHOD SP TARGET SP HTTP/1.x" followed by "Name: value" header lines.
// Exposed for the fuzz target and tests.
Result<HttpRequestHead> parse_http_request_head(std::string_view bytes);

class MetricsHttpServer {
 public:
  using Renderer = std::function<std::string()>;

  // Binds, listens and starts the serving thread. Errors: IoError naming the address (in use, not
  // local), InvalidArgument for an address that does not parse or resolve.
  static Result<std::unique_ptr<MetricsHttpServer>> start(Renderer render,
                                                          MetricsHttpServerOptions options = {});
  // Serves `registry.render()`; the registry must outlive the server.
  static Result<std::unique_ptr<MetricsHttpServer>> start(const MetricsRegistry& registry,
                                                          MetricsHttpServerOptions options = {});

  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Stops serving and joins the thread; a connection in progress is closed. Idempotent.
  void stop();

  uint16_t port() const { return port_; }
  // "127.0.0.1:23456" ("[::1]:23456" for IPv6), for logs and for scrape configs.
  std::string address() const;
  // Requests answered so far (any status), for tests and logs.
  uint64_t requests_served() const { return served_.load(std::memory_order_relaxed); }

 private:
  MetricsHttpServer(Renderer render, MetricsHttpServerOptions options);
  void run();
  void serve_connection(int fd);
  std::string respond(std::string_view request_bytes, bool too_large);

  Renderer render_;
  MetricsHttpServerOptions options_;
  int listen_fd_ = -1;
  int wake_read_ = -1;
  int wake_write_ = -1;
  uint16_t port_ = 0;
  bool ipv6_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> served_{0};
  std::thread thread_;
};

}  // namespace hivemind
