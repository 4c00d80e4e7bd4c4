// build/bin/hivemind-server as a process: ready line, SIGUSR1 checkpoint, SIGTERM drain and exit 0.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include <gtest/gtest.h>
#include <signal.h>
#include <torch/types.h>
#include <unistd.h>

#include <hivemind/harness/child_process.h>
#include <hivemind/runtime/expert_backend.h>
#include <hivemind/runtime/torchscript_expert.h>

#include "server_test_util.h"
#include "test_env.h"
#include "torchscript_files.h"

namespace hivemind::server {
namespace {

using namespace std::chrono_literals;

// A child process whose stdout and stderr are read line by line, with a deadline on every wait;
// keeps what it read of each stream for the assertions and the failure messages.
class Child {
 public:
  Child(const std::string& program, const std::vector<std::string>& args,
        const std::vector<std::string>& env) {
    ChildOptions options;
    options.argv.push_back(program);
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    for (const std::string& entry : env) {
      const size_t eq = entry.find('=');
      options.env.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
    }
    options.stderr_to = ChildOutput::kPipe;
    auto spawned = ChildProcess::spawn(std::move(options));
    EXPECT_TRUE(spawned.is_ok()) << spawned.status().to_string();
    if (spawned.is_ok()) process_ = std::move(*spawned);
  }

  // Reads `stream` (0 stdout, 1 stderr) until a line contains `text`; returns it.
  std::optional<std::string> wait_for(int stream, const std::string& text, Deadline deadline) {
    while (true) {
      auto line = process_.read_line(deadline, static_cast<ChildStream>(stream));
      if (!line.is_ok()) return std::nullopt;
      transcript_[stream] += *line + "\n";
      if (line->find(text) != std::string::npos) return *line;
    }
  }

  // The exit status, or -1 at the deadline.
  int wait_exit(Deadline deadline) {
    auto code = process_.wait(deadline);
    return code.is_ok() ? *code : -1;
  }

  void signal(int sig) { process_.signal(sig); }

  // Everything `stream` printed that has arrived so far.
  const std::string& output(int stream) {
    const Deadline now(SteadyClock::now());  // take what is there, wait for nothing
    while (auto line = process_.read_line(now, static_cast<ChildStream>(stream)))
      transcript_[stream] += *line + "\n";
    return transcript_[stream];
  }

 private:
  ChildProcess process_;
  std::string transcript_[2];
};

// The arguments every process test starts its one-expert server with, then `extra`.
std::vector<std::string> one_expert_server_args(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--expert_uids",
                                   "ffn.0.0",
                                   "--hidden_dim",
                                   "8",
                                   "--host",
                                   "127.0.0.1",
                                   "--port",
                                   "0",
                                   "--transport",
                                   "tcp",
                                   "--cpu_bind",
                                   "none",
                                   "--stats_report_interval",
                                   "0",
                                   "--compression",
                                   "none",
                                   "--grace_period",
                                   "20"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(ServerProcessTest, Sigusr1CheckpointsAndSigtermDrainsThenExitsZero) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hm_rt_proc_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  Child child(hivemind::testing::program_path("hivemind-server"),
              one_expert_server_args({"--checkpoint_dir", dir.string(), "--max_batch_size", "64",
                                      "--min_batch_size", "64", "--batch_timeout_ms", "3600000"}),
              {"HIVEMIND_LOG_LEVEL=debug", "HIVEMIND_SPIN_US=0"});
  auto ready = child.wait_for(0, "hivemind-server ready:", Deadline::after(60s));
  ASSERT_TRUE(ready) << "no ready line; stderr:\n" << child.output(1);
  const size_t at = ready->find(" at ");
  ASSERT_NE(at, std::string::npos) << *ready;
  std::string address = ready->substr(at + 4);
  address = address.substr(0, address.find(','));

  child.signal(SIGUSR1);
  ASSERT_TRUE(child.wait_for(1, "checkpoint written", Deadline::after(60s))) << child.output(1);
  EXPECT_TRUE(std::filesystem::exists(dir / "ffn.0.0.pt"));

  // A request that waits in the queue (min_batch_size 64, an hour's timeout) until the drain runs
  // it.
  server::testing::RawClient client;
  auto pending = client.call_async(address, protocol::kForwardMethod, "ffn.0.0",
                                   {server::testing::encode(torch::randn({2, 8}))});
  ASSERT_TRUE(child.wait_for(1, "queued 2 sample(s)", Deadline::after(60s))) << child.output(1);
  child.signal(SIGTERM);
  ASSERT_EQ(pending.wait_for(60s), std::future_status::ready);
  auto reply = pending.get();
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string() << "\n" << child.output(1);
  EXPECT_EQ(server::testing::decode(reply->tensors.at(0)).sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(child.wait_exit(Deadline::after(60s)), 0) << child.output(1);
  EXPECT_NE(child.output(0).find("hivemind-server stopped"), std::string::npos) << child.output(0);
  EXPECT_NE(child.output(1).find("SIGTERM: draining"), std::string::npos);

  // The final checkpoint is a valid one.
  runtime::ExpertBackendOptions options;
  auto backend =
      runtime::ExpertBackend::create(
          "ffn.0.0", runtime::make_expert("ffn", 8, "ffn.0.0", runtime::kDefaultExpertSeed).value(),
          options)
          .value();
  EXPECT_TRUE(backend->load_checkpoint(dir / "ffn.0.0.pt").is_ok());
  std::filesystem::remove_all(dir);
}

// Runs `command` through the shell; its stdout, or nullopt when it exits non-zero.
std::optional<std::string> run_capture(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char chunk[4096];
  for (size_t n; (n = std::fread(chunk, 1, sizeof(chunk), pipe)) > 0;)
    out.append(chunk, n);
  return ::pclose(pipe) == 0 ? std::optional<std::string>(out) : std::nullopt;
}

TEST(ServerProcessTest, MetricsPortAnswersAPrometheusScrapeByCurl) {
  Child child(hivemind::testing::program_path("hivemind-server"),
              one_expert_server_args({"--metrics-port", "0"}), {"HIVEMIND_SPIN_US=0"});
  auto ready = child.wait_for(0, "hivemind-server ready:", Deadline::after(60s));
  ASSERT_TRUE(ready) << "no ready line; stderr:\n" << child.output(1);
  const size_t at = ready->find(" at "), metrics_at = ready->find(", metrics ");
  ASSERT_NE(metrics_at, std::string::npos) << *ready;
  std::string address = ready->substr(at + 4);
  address = address.substr(0, address.find(','));
  const std::string url = ready->substr(metrics_at + 10);
  ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << url;

  server::testing::RawClient client;
  auto reply = client.call(address, protocol::kForwardMethod, "ffn.0.0",
                           {server::testing::encode(torch::randn({5, 8}))});
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();

  // A real HTTP client: curl fails (exit 22) on any status other than 2xx.
  auto scraped = run_capture("curl --silent --show-error --fail --max-time 30 '" + url + "'");
  ASSERT_TRUE(scraped) << "curl could not scrape " << url;
  EXPECT_NE(
      scraped->find("hivemind_expert_requests_total{expert=\"ffn.0.0\",method=\"forward\"} 1\n"),
      std::string::npos)
      << *scraped;
  EXPECT_NE(
      scraped->find("hivemind_expert_batch_size_sum{expert=\"ffn.0.0\",method=\"forward\"} 5\n"),
      std::string::npos)
      << *scraped;
  EXPECT_NE(scraped->find("# TYPE hivemind_expert_request_seconds histogram\n"), std::string::npos);
  EXPECT_NE(scraped->find("# TYPE hivemind_transport_bytes_sent_total counter\n"),
            std::string::npos);
  EXPECT_NE(scraped->find("hivemind_dht_routing_table_size 0\n"), std::string::npos) << *scraped;
  EXPECT_NE(scraped->find("hivemind_server_experts 1\n"), std::string::npos);
  EXPECT_FALSE(run_capture("curl --silent --fail --max-time 30 '" + url.substr(0, url.size() - 8) +
                           "/other'"))
      << "a path other than /metrics must fail";

  child.signal(SIGTERM);
  EXPECT_EQ(child.wait_exit(Deadline::after(60s)), 0) << child.output(1);
}

TEST(ServerProcessTest, BadFlagsFailAtStartWithExitCode2) {
  Child child(hivemind::testing::program_path("hivemind-server"),
              {"--expert_uids", "ffn.0.0", "--optimizer", "lamb"}, {});
  EXPECT_EQ(child.wait_exit(Deadline::after(60s)), 2);
  EXPECT_NE(child.output(1).find("--optimizer"), std::string::npos) << child.output(1);
}

// hivemind-server's own flags host a TorchScript file; a file it cannot host stops it at start with
// exit code 2 and the file named.
TEST(ServerProcessTest, TorchScriptExpertsFromTheCommandLine) {
  test_experts::TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(runtime::save_scripted_ffn(file, 8, 1).is_ok());
  {
    Child child(hivemind::testing::program_path("hivemind-server"),
                one_expert_server_args(
                    {"--expert_cls", "torchscript", "--module_path", file.string(), "--reinit"}),
                {"HIVEMIND_SPIN_US=0"});
    auto ready = child.wait_for(0, "hivemind-server ready:", Deadline::after(60s));
    ASSERT_TRUE(ready) << "no ready line; stderr:\n" << child.output(1);
    std::string address = ready->substr(ready->find(" at ") + 4);
    address = address.substr(0, address.find(','));
    server::testing::RawClient client;
    auto y = client.tensors(address, protocol::kForwardMethod, "ffn.0.0", {torch::randn({2, 8})});
    ASSERT_TRUE(y.is_ok()) << y.status().to_string() << "\n" << child.output(1);
    EXPECT_EQ(y->at(0).sizes(), (std::vector<int64_t>{2, 8}));
    child.signal(SIGTERM);
    EXPECT_EQ(child.wait_exit(Deadline::after(60s)), 0) << child.output(1);
  }
  const auto garbage = dir / "garbage.pt";
  std::ofstream(garbage) << "not a TorchScript archive\n";
  Child refused(
      hivemind::testing::program_path("hivemind-server"),
      one_expert_server_args({"--expert_cls", "torchscript", "--module_path", garbage.string()}),
      {"HIVEMIND_SPIN_US=0"});
  EXPECT_EQ(refused.wait_exit(Deadline::after(60s)), 2);
  const std::string& stderr_text = refused.output(1);
  EXPECT_NE(stderr_text.find(garbage.string() + ": cannot be loaded as a TorchScript archive"),
            std::string::npos)
      << stderr_text;
}

}  // namespace
}  // namespace hivemind::server
