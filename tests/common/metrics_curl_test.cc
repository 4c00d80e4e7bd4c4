// The metrics endpoint as Prometheus and operators reach it: a real HTTP client (curl) on loopback.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <hivemind/common/metrics_endpoint.h>

namespace hivemind {
namespace {

// Runs a shell command and returns its stdout (and its exit status through `status`).
std::string capture(const std::string& command, int& status) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    status = -1;
    return "";
  }
  std::string out;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    out.append(buffer.data(), n);
  status = pclose(pipe);
  return out;
}

bool have_curl() {
  return std::system("command -v curl >/dev/null 2>&1") == 0;
}

TEST(MetricsCurlTest, CurlScrapesMetrics) {
  if (!have_curl()) GTEST_SKIP() << "curl is not installed";
  MetricsRegistry registry;
  registry
      .counter("hivemind_expert_requests_total", "Requests per expert", {{"expert", "expert.1.2"}})
      .inc(5);
  registry.histogram("hivemind_batch_size", "Batch sizes", {1, 8, 64}).observe(16);
  auto endpoint = MetricsEndpoint::start(registry);
  ASSERT_TRUE(endpoint.is_ok()) << endpoint.status().to_string();
  EXPECT_NE((*endpoint)->port(), 0);
  std::string url = "http://" + (*endpoint)->address();

  int status = 0;
  std::string body = capture("curl -sS --max-time 20 --fail " + url + "/metrics", status);
  EXPECT_EQ(status, 0);
  // The registry's families, whole, next to the Exposer's own (exposer_scrapes_total, ...).
  EXPECT_NE(body.find(registry.render()), std::string::npos) << body;
  EXPECT_NE(body.find("# TYPE exposer_scrapes_total counter\n"), std::string::npos) << body;
  EXPECT_NE(body.find("hivemind_expert_requests_total{expert=\"expert.1.2\"} 5\n"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("hivemind_batch_size_bucket{le=\"64\"} 1\n"), std::string::npos) << body;

  // prometheus-cpp announces no format version (Prometheus then assumes the text format 0.0.4).
  std::string headers =
      capture("curl -sS --max-time 20 -D - -o /dev/null " + url + "/metrics", status);
  EXPECT_NE(headers.find("Content-Type: text/plain; charset=utf-8"), std::string::npos) << headers;

  std::string code =
      capture("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' " + url + "/nothing", status);
  EXPECT_EQ(code, "404");
  code =
      capture("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' -X DELETE " + url + "/metrics",
              status);
  EXPECT_EQ(code, "405");

  // After stop() nothing listens: the connection is refused (curl exit 7), not left hanging.
  (*endpoint)->stop();
  capture("curl -sS --max-time 20 -o /dev/null " + url + "/metrics 2>/dev/null", status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7) << status;
}

TEST(MetricsCurlTest, StartErrorsNameTheAddress) {
  MetricsRegistry registry;
  auto first = MetricsEndpoint::start(registry);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();

  MetricsEndpointOptions taken;
  taken.port = (*first)->port();
  auto second = MetricsEndpoint::start(registry, taken);
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find((*first)->address()), std::string::npos)
      << second.status().to_string();

  MetricsEndpointOptions named;
  named.bind_address = "localhost";
  auto third = MetricsEndpoint::start(registry, named);
  ASSERT_FALSE(third.is_ok());
  EXPECT_EQ(third.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(third.status().message().find("'localhost'"), std::string::npos)
      << third.status().to_string();
}

}  // namespace
}  // namespace hivemind
