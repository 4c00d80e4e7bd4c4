#include <cstdio>
#include <string>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hivemind/common/metrics_http_server.h>

namespace hivemind {
namespace {

// A raw HTTP client: sends `request` (possibly in pieces), then reads until the server closes or
// the deadline passes. No library in between, so malformed requests reach the server as written.
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Everything the server sends until it closes; the deadline only bounds a broken server.
  std::string read_all(Milliseconds timeout = Milliseconds(10'000)) {
    Deadline deadline = Deadline::after(timeout);
    std::string out;
    char buffer[4096];
    while (!deadline.expired()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(deadline.remaining().count())) <= 0) break;
      ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return out;
      out.append(buffer, static_cast<size_t>(n));
    }
    ADD_FAILURE() << "the server did not close the connection";
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

std::string exchange(uint16_t port, const std::string& request) {
  RawClient client(port);
  EXPECT_TRUE(client.connected());
  EXPECT_TRUE(client.send(request));
  return client.read_all();
}

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}
std::string body_of(const std::string& response) {
  size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.counter("hivemind_requests_total", "Requests", {{"expert", "expert.0.0"}}).inc(42);
    MetricsHttpServerOptions options;
    options.port = 0;
    options.max_request_bytes = 1024;
    options.client_timeout = Milliseconds(300);
    auto server = MetricsHttpServer::start(registry_, options);
    ASSERT_TRUE(server.is_ok()) << server.status().to_string();
    server_ = std::move(*server);
    ASSERT_NE(server_->port(), 0);
  }

  MetricsRegistry registry_;
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpServerTest, ServesMetrics) {
  std::string response =
      exchange(server_->port(), "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(status_line(response), "HTTP/1.1 200 OK");
  EXPECT_NE(response.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos);
  std::string body = body_of(response);
  EXPECT_EQ(body, registry_.render());
  EXPECT_NE(response.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string::npos);
  EXPECT_NE(body.find("hivemind_requests_total{expert=\"expert.0.0\"} 42\n"), std::string::npos);
  EXPECT_EQ(server_->address(), "127.0.0.1:" + std::to_string(server_->port()));
}

TEST_F(MetricsHttpServerTest, EachScrapeSeesCurrentValues) {
  auto& counter =
      registry_.counter("hivemind_requests_total", "Requests", {{"expert", "expert.0.0"}});
  counter.inc();
  EXPECT_NE(exchange(server_->port(), "GET /metrics?x=1 HTTP/1.0\r\n\r\n").find("} 43\n"),
            std::string::npos);
  counter.inc();
  EXPECT_NE(exchange(server_->port(), "GET /metrics HTTP/1.1\n\n").find("} 44\n"),
            std::string::npos);
  EXPECT_EQ(server_->requests_served(), 2u);
}

TEST_F(MetricsHttpServerTest, HeadHasHeadersOnly) {
  std::string response = exchange(server_->port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status_line(response), "HTTP/1.1 200 OK");
  EXPECT_EQ(body_of(response), "");
  EXPECT_NE(response.find("Content-Length: " + std::to_string(registry_.render().size())),
            std::string::npos);
}

TEST_F(MetricsHttpServerTest, OtherPathsAndMethodsAreRefused) {
  EXPECT_EQ(status_line(exchange(server_->port(), "GET / HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 404 Not Found");
  EXPECT_EQ(status_line(exchange(server_->port(), "GET /metricsx HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 404 Not Found");
  std::string post =
      exchange(server_->port(), "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(status_line(post), "HTTP/1.1 405 Method Not Allowed");
  EXPECT_NE(post.find("Allow: GET, HEAD\r\n"), std::string::npos);
}

TEST_F(MetricsHttpServerTest, MalformedAndOversizedRequests) {
  EXPECT_EQ(status_line(exchange(server_->port(), "garbage\r\n\r\n")), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(status_line(exchange(server_->port(), "GET /metrics HTTP/2.0\r\n\r\n")),
            "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(status_line(exchange(server_->port(), "GET /metrics HTTP/1.1\r\n folded\r\n\r\n")),
            "HTTP/1.1 400 Bad Request");
  std::string huge = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(4096, 'a') + "\r\n\r\n";
  EXPECT_EQ(status_line(exchange(server_->port(), huge)),
            "HTTP/1.1 431 Request Header Fields Too Large");
}

TEST_F(MetricsHttpServerTest, SilentClientIsCutOffThenOthersAreServed) {
  RawClient silent(server_->port());
  ASSERT_TRUE(silent.connected());
  ASSERT_TRUE(silent.send("GET /metr"));
  // The server gives up on it after client_timeout and closes without a response.
  EXPECT_EQ(silent.read_all(), "");
  EXPECT_EQ(status_line(exchange(server_->port(), "GET /metrics HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 200 OK");
}

TEST_F(MetricsHttpServerTest, StopIsBoundedWithAClientConnected) {
  RawClient idle(server_->port());
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(idle.send("GET"));
  server_->stop();  // must return although the connection is open and incomplete
  server_->stop();  // idempotent
  EXPECT_EQ(idle.read_all(), "");
  RawClient after(server_->port());
  EXPECT_FALSE(after.connected()) << "a stopped server must close its port";
}

TEST(MetricsHttpServerStartTest, BindErrorsAreReported) {
  MetricsRegistry registry;
  MetricsHttpServerOptions options;
  options.bind_address = "not an address";
  auto bad = MetricsHttpServer::start(registry, options);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);

  options.bind_address = "127.0.0.1";
  auto first = MetricsHttpServer::start(registry, options);
  ASSERT_TRUE(first.is_ok());
  options.port = (*first)->port();
  auto second = MetricsHttpServer::start(registry, options);
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find(std::to_string(options.port)), std::string::npos);
}

TEST(MetricsHttpServerStartTest, RendererFailureIs500) {
  auto server =
      MetricsHttpServer::start([]() -> std::string { throw std::runtime_error("broken"); });
  ASSERT_TRUE(server.is_ok());
  EXPECT_EQ(status_line(exchange((*server)->port(), "GET /metrics HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 500 Internal Server Error");
}

TEST(HttpRequestHeadTest, Parses) {
  auto request =
      parse_http_request_head("GET /metrics?a=b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nbody");
  ASSERT_TRUE(request.is_ok()) << request.status().to_string();
  EXPECT_EQ(request->method, "GET");
  EXPECT_EQ(request->target, "/metrics?a=b");
  EXPECT_EQ(request->version, "HTTP/1.1");
}

TEST(HttpRequestHeadTest, Rejects) {
  for (const char* bad :
       {"", "GET /metrics HTTP/1.1\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "GET /metrics\r\n\r\n",
        "GET metrics HTTP/1.1\r\n\r\n", "G T /m HTTP/1.1\r\n\r\n", "GET /m HTTP/1.1 extra\r\n\r\n",
        "GET /m HTTP/1.1\r\nNoColon\r\n\r\n", "GET /m HTTP/1.1\r\n: empty\r\n\r\n",
        "GET /m HTTP/1.1\r\nA: b\x01\r\n\r\n", "GET /m\x7f HTTP/1.1\r\n\r\n"}) {
    EXPECT_FALSE(parse_http_request_head(bad).is_ok()) << bad;
  }
}

}  // namespace
}  // namespace hivemind
