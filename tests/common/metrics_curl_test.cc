// The metrics endpoint as Prometheus and operators reach it: a real HTTP client (curl) on loopback.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include <hivemind/common/metrics_http_server.h>

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

TEST(MetricsCurlTest, CurlScrapesMetrics) {
  if (std::system("command -v curl >/dev/null 2>&1") != 0) GTEST_SKIP() << "curl is not installed";
  MetricsRegistry registry;
  registry
      .counter("hivemind_expert_requests_total", "Requests per expert", {{"expert", "expert.1.2"}})
      .inc(5);
  registry.histogram("hivemind_batch_size", "Batch sizes", {1, 8, 64}).observe(16);
  auto server = MetricsHttpServer::start(registry);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  std::string url = "http://" + (*server)->address();

  int status = 0;
  std::string body = capture("curl -sS --max-time 20 --fail " + url + "/metrics", status);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(body, registry.render());
  EXPECT_NE(body.find("hivemind_expert_requests_total{expert=\"expert.1.2\"} 5\n"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("hivemind_batch_size_bucket{le=\"64\"} 1\n"), std::string::npos) << body;

  std::string headers =
      capture("curl -sS --max-time 20 -D - -o /dev/null " + url + "/metrics", status);
  EXPECT_NE(headers.find("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            std::string::npos)
      << headers;

  std::string code =
      capture("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' " + url + "/nothing", status);
  EXPECT_EQ(code, "404");
  code =
      capture("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' -X DELETE " + url + "/metrics",
              status);
  EXPECT_EQ(code, "405");
}

}  // namespace
}  // namespace hivemind
