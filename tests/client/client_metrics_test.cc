// A trainer's metrics: MeteredExpertCaller counts what it passes on, by method and failure reason,
// and a scrape of the trainer's endpoint shows exactly the calls it made.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <hivemind/client/metered_expert_caller.h>
#include <hivemind/client/remote_moe.h>
#include <hivemind/common/metrics_http_server.h>

#include "fake_swarm.h"

namespace hivemind::client {
namespace {

// Completes every call at once with the status the test scripts per uid (ok: the inputs back).
class ScriptedCaller final : public ExpertCaller {
 public:
  std::map<std::string, Status> outcome;

  void forward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs, Deadline,
               ExpertCallback done) override {
    answer(expert, std::move(inputs), std::move(done));
  }
  void backward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                std::vector<torch::Tensor>, Deadline, ExpertCallback done) override {
    answer(expert, std::move(inputs), std::move(done));
  }

 private:
  void answer(const ExpertAddress& expert, std::vector<torch::Tensor> inputs, ExpertCallback done) {
    const Status& s = outcome[expert.uid];
    if (s.is_ok())
      done(std::move(inputs));
    else
      done(s);
  }
};

// The value of the sample line `series` ("name{labels}") in a text exposition, or -1.
double sample(const std::string& text, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const size_t at = ("\n" + text).find(key);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size() - 1));
}

std::string calls(const char* method) {
  return std::string("hivemind_client_calls_total{method=\"") + method + "\"}";
}
std::string failures(const char* method, const char* reason) {
  return std::string("hivemind_client_call_failures_total{method=\"") + method + "\",reason=\"" +
         reason + "\"}";
}

TEST(ClientMetricsTest, FailuresAreCountedByReason) {
  EXPECT_EQ(classify_failure(StatusCode::kTimeout), CallFailure::kTimeout);
  EXPECT_EQ(classify_failure(StatusCode::kUnavailable), CallFailure::kUnavailable);
  EXPECT_EQ(classify_failure(StatusCode::kPeerClosed), CallFailure::kUnavailable);
  EXPECT_EQ(classify_failure(StatusCode::kIoError), CallFailure::kUnavailable);
  EXPECT_EQ(classify_failure(StatusCode::kNotFound), CallFailure::kUnavailable);
  EXPECT_EQ(classify_failure(StatusCode::kProtocol), CallFailure::kError);
  EXPECT_EQ(classify_failure(StatusCode::kInvalidArgument), CallFailure::kError);

  auto inner = std::make_shared<ScriptedCaller>();
  inner->outcome["late"] = timeout_error("deadline passed");
  inner->outcome["gone"] = peer_closed_error("connection reset");
  inner->outcome["bad"] = protocol_error("answered 2 tensors");
  MetricsRegistry registry;
  auto caller = MeteredExpertCaller::create(inner, registry);
  int completions = 0;
  auto count = [&completions](Result<std::vector<torch::Tensor>>) { ++completions; };
  const torch::Tensor x = torch::ones({2, 3});
  const Deadline deadline = Deadline::after(std::chrono::seconds(10));
  for (const char* uid : {"fine", "fine", "late", "gone", "bad"})
    caller->forward({uid, "tcp://127.0.0.1:1"}, {x}, deadline, count);
  caller->backward({"fine", "tcp://127.0.0.1:1"}, {x}, {x}, deadline, count);
  caller->backward({"late", "tcp://127.0.0.1:1"}, {x}, {x}, deadline, count);
  EXPECT_EQ(completions, 7) << "every completion passes through exactly once";

  const std::string text = registry.render();
  EXPECT_EQ(sample(text, calls("forward")), 5) << text;
  EXPECT_EQ(sample(text, calls("backward")), 2) << text;
  EXPECT_EQ(sample(text, failures("forward", "timeout")), 1) << text;
  EXPECT_EQ(sample(text, failures("forward", "unavailable")), 1) << text;
  EXPECT_EQ(sample(text, failures("forward", "error")), 1) << text;
  EXPECT_EQ(sample(text, failures("backward", "timeout")), 1) << text;
  EXPECT_EQ(sample(text, failures("backward", "unavailable")), 0) << text;
  EXPECT_EQ(sample(text, "hivemind_client_call_seconds_count{method=\"forward\"}"), 5) << text;
  EXPECT_EQ(sample(text, "hivemind_client_call_seconds_bucket{method=\"backward\",le=\"+Inf\"}"), 2)
      << text;
}

// Runs a shell command and returns its stdout.
std::string capture(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    out.append(buffer.data(), n);
  pclose(pipe);
  return out;
}

TEST(ClientMetricsTest, ScrapeOfATrainerCountsTheCallsItsMixtureMade) {
  if (std::system("command -v curl >/dev/null 2>&1") != 0) GTEST_SKIP() << "curl is not installed";
  constexpr int64_t kHidden = 8;
  testing::Swarm swarm = testing::make_swarm("expert.", {3, 3}, kHidden, 0.7, 11, 0);
  MetricsRegistry registry;
  auto caller = MeteredExpertCaller::create(swarm.caller, registry);
  RemoteMixtureOfExpertsOptions options;
  options.in_features = kHidden;
  options.grid_size = swarm.grid;
  options.uid_prefix = swarm.prefix;
  options.k_best = 2;
  RemoteMixtureOfExperts moe(options, swarm.directory, caller);
  auto endpoint = MetricsHttpServer::start(registry);
  ASSERT_TRUE(endpoint.is_ok()) << endpoint.status().to_string();

  torch::Tensor x = torch::randn({4, kHidden}, torch::requires_grad());
  moe->forward(x).sum().backward();
  int64_t forward_calls = 0, backward_calls = 0;
  for (const auto& call : swarm.caller->calls())
    ++(call.backward ? backward_calls : forward_calls);
  ASSERT_GT(forward_calls, 0);
  ASSERT_GT(backward_calls, 0);

  const std::string body =
      capture("curl -sS --max-time 20 --fail http://" + (*endpoint)->address() + "/metrics");
  EXPECT_EQ(sample(body, calls("forward")), static_cast<double>(forward_calls)) << body;
  EXPECT_EQ(sample(body, calls("backward")), static_cast<double>(backward_calls)) << body;
  EXPECT_EQ(sample(body, failures("forward", "error")), 0) << body;
  EXPECT_EQ(sample(body, "hivemind_client_call_seconds_count{method=\"forward\"}"),
            static_cast<double>(forward_calls))
      << body;
}

}  // namespace
}  // namespace hivemind::client
