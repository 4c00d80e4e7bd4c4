// Real hivemind-dht processes on loopback: joining through a bootstrap file, a node killed with
// SIGKILL, --check, and a node with no reachable peer failing clearly by its deadline.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/text.h>
#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/harness/child_process.h>

#include "test_env.h"

namespace hivemind::dht {
namespace {

// A hivemind-dht process whose stdout and stderr go to a log file; killed and reaped when dropped.
class Child {
 public:
  Child(std::vector<std::string> args, const std::string& log) {
    ChildOptions options;
    options.argv = std::move(args);
    options.stdout_to = ChildOutput::kFile;
    options.stderr_to = ChildOutput::kFile;
    options.output_file = log;
    options.pipe_stdin = false;
    auto spawned = ChildProcess::spawn(std::move(options));
    EXPECT_TRUE(spawned.is_ok()) << spawned.status().to_string();
    if (spawned.is_ok()) process_ = std::move(*spawned);
  }

  void kill(int signal) {
    process_.signal(signal);
    if (signal == SIGKILL) (void)wait_exit(Deadline::after(std::chrono::seconds(5)));
  }
  // The exit status, or nullopt if the child is still running at the deadline.
  std::optional<int> wait_exit(Deadline deadline) {
    if (!exit_ && process_.running()) {
      if (auto code = process_.wait(deadline); code.is_ok()) exit_ = *code;
    }
    return exit_;
  }

 private:
  ChildProcess process_;
  std::optional<int> exit_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class Processes : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = ::testing::TempDir() + "/dht-mp-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
    program = testing::program_path("hivemind-dht");
    ASSERT_TRUE(std::filesystem::exists(program)) << program;
  }
  void TearDown() override {
    children.clear();
    std::filesystem::remove_all(dir);
  }
  // Starts a node; returns its address once it wrote its bootstrap file.
  std::string start_node(const std::vector<std::string>& peers) {
    size_t n = children.size();
    std::string file = dir + "/node" + std::to_string(n) + ".addr";
    std::vector<std::string> args = {program, "--host",           "127.0.0.1", "--port",
                                     "0",     "--bootstrap-file", file};
    if (!peers.empty()) {
      args.push_back("--initial-peers");
      args.insert(args.end(), peers.begin(), peers.end());
    }
    children.push_back(std::make_unique<Child>(args, dir + "/node" + std::to_string(n) + ".log"));
    auto addresses = wait_for_bootstrap_file(file, Deadline::after(std::chrono::seconds(20)));
    EXPECT_TRUE(addresses.is_ok()) << addresses.status().to_string() << "\n"
                                   << read_file(dir + "/node" + std::to_string(n) + ".log");
    return addresses.is_ok() ? addresses->front() : "";
  }

  std::string dir, program;
  std::vector<std::unique_ptr<Child>> children;
};

TEST_F(Processes, NodesJoinServeAndSurviveAKill) {
  std::vector<std::string> addresses;
  addresses.push_back(start_node({}));
  for (int i = 1; i < 6; ++i)
    addresses.push_back(start_node({addresses[0]}));
  ASSERT_EQ(addresses.size(), 6u);

  // An in-process node joins the swarm of processes, declares experts; another finds them.
  DhtOptions options;
  options.listen = "tcp://127.0.0.1:0";
  options.initial_peers = {addresses[2]};
  auto server = Dht::start(options);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  std::vector<std::string> uids = {"ffn.0.1", "ffn.0.2", "ffn.5.5"};
  ASSERT_TRUE(declare_experts(**server, uids, (*server)->address(), (*server)->dht_now() + 120'000,
                              Deadline::after(std::chrono::seconds(10)))
                  .is_ok());
  options.initial_peers = {addresses[4]};
  auto client = Dht::start(options);
  ASSERT_TRUE(client.is_ok());
  auto found = get_experts(**client, uids, Deadline::after(std::chrono::seconds(10)));
  ASSERT_TRUE(found.is_ok());
  for (const auto& e : *found)
    EXPECT_TRUE(e.has_value());

  // The processes log peers joining (the program looks at its table once a second): poll the log.
  Deadline logged = Deadline::after(std::chrono::seconds(10));
  while (read_file(dir + "/node0.log").find("peer joined") == std::string::npos &&
         !logged.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(read_file(dir + "/node0.log").find("peer joined"), std::string::npos)
      << read_file(dir + "/node0.log");

  // Two nodes die without a word; the records have replicas elsewhere.
  children[1]->kill(SIGKILL);
  children[3]->kill(SIGKILL);
  std::vector<std::string> keys = {"ffn.", "ffn.0."};
  auto after =
      (*client)->get(keys, Deadline::after(std::chrono::seconds(10)), GetOptions{.latest = true});
  ASSERT_TRUE(after.is_ok()) << after.status().to_string();
  EXPECT_EQ((*after)[0]->dictionary.size(), 2u);
  EXPECT_EQ((*after)[1]->dictionary.size(), 2u);

  // --check reports what a live node sees; a dead one is reported as such.
  Child check({program, "--check", addresses[0], "--timeout", "2"}, dir + "/check.log");
  EXPECT_EQ(check.wait_exit(Deadline::after(std::chrono::seconds(20))), 0)
      << read_file(dir + "/check.log");
  std::string report = read_file(dir + "/check.log");
  EXPECT_NE(report.find("answered in"), std::string::npos) << report;
  EXPECT_NE(report.find("nearest to it"), std::string::npos) << report;
  // With --experts it accounts for a pattern: 2 of ffn.0.[0:4] are declared.
  Child half({program, "--check", addresses[0], "--timeout", "2", "--experts", "ffn.0.[0:4]",
              "--min-coverage", "0.5"},
             dir + "/check-half.log");
  EXPECT_EQ(half.wait_exit(Deadline::after(std::chrono::seconds(20))), 0)
      << read_file(dir + "/check-half.log");
  report = read_file(dir + "/check-half.log");
  EXPECT_NE(report.find("coverage: 2 of 4 experts live (50.0%), threshold 50.0%: ok"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("ffn.0.3"), std::string::npos) << report;
  EXPECT_NE(report.find((*server)->address() + " hosts 2"), std::string::npos) << report;
  Child all({program, "--check", addresses[0], "--timeout", "2", "--experts", "ffn.0.[0:4]"},
            dir + "/check-all.log");
  EXPECT_EQ(all.wait_exit(Deadline::after(std::chrono::seconds(20))), 1)
      << read_file(dir + "/check-all.log");
  EXPECT_NE(read_file(dir + "/check-all.log").find("BELOW THRESHOLD"), std::string::npos);
  Child dead({program, "--check", addresses[1], "--timeout", "1"}, dir + "/check-dead.log");
  EXPECT_EQ(dead.wait_exit(Deadline::after(std::chrono::seconds(20))), 1)
      << read_file(dir + "/check-dead.log");
  EXPECT_NE(read_file(dir + "/check-dead.log").find("no answer"), std::string::npos);

  // SIGTERM stops a node cleanly.
  children[5]->kill(SIGTERM);
  EXPECT_EQ(children[5]->wait_exit(Deadline::after(std::chrono::seconds(10))), 0);
}

TEST_F(Processes, NoReachablePeerFailsClearlyWithinTheDeadline) {
  Child lonely({program, "--host", "127.0.0.1", "--initial-peers", "tcp://127.0.0.1:21997",
                "tcp://127.0.0.1:21998", "--bootstrap-timeout", "3"},
               dir + "/lonely.log");
  auto code = lonely.wait_exit(Deadline::after(std::chrono::seconds(15)));
  ASSERT_TRUE(code.has_value()) << "hivemind-dht did not give up";
  EXPECT_EQ(*code, 1);
  std::string log = read_file(dir + "/lonely.log");
  EXPECT_NE(log.find("none of the 2 initial peer(s) answered"), std::string::npos) << log;
  EXPECT_NE(log.find("tcp://127.0.0.1:21997"), std::string::npos) << log;
}

// The path of `name` in $PATH ("" when absent): ChildProcess runs a path, it does not search.
std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (const std::string& dir : split_list(path ? path : "", ':')) {
    std::filesystem::path candidate = std::filesystem::path(dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// The body curl gets from `url`, or "" when curl fails.
std::string scrape(const std::string& curl_path, const std::string& url) {
  auto curl = ChildProcess::spawn({curl_path, "-sS", "--max-time", "10", "--fail", url});
  EXPECT_TRUE(curl.is_ok()) << curl.status().to_string();
  if (!curl.is_ok()) return "";
  std::string body;
  const Deadline deadline = Deadline::after(std::chrono::seconds(15));
  for (auto line = curl->read_line(deadline); line.is_ok(); line = curl->read_line(deadline))
    body += *line + "\n";
  auto code = curl->wait(deadline);
  EXPECT_TRUE(code.is_ok() && *code == 0)
      << "curl " << url << ": "
      << (code.is_ok() ? std::to_string(*code) : code.status().to_string());
  return body;
}

TEST_F(Processes, ServesItsMetricsWhenAsked) {
  const std::string curl = find_in_path("curl");
  if (curl.empty()) GTEST_SKIP() << "curl is not installed";
  const std::string file = dir + "/metrics-node.addr";
  auto node = ChildProcess::spawn({program, "--host", "127.0.0.1", "--port", "0", "--metrics-port",
                                   "0", "--bootstrap-file", file});
  ASSERT_TRUE(node.is_ok()) << node.status().to_string();
  auto line = node->read_line_containing("metrics at ", Deadline::after(std::chrono::seconds(20)));
  ASSERT_TRUE(line.is_ok()) << line.status().to_string();
  const std::string url = line->substr(line->find("http://"));

  // Alone: no peer, no request yet.
  std::string body = scrape(curl, url);
  EXPECT_NE(body.find("# TYPE hivemind_dht_routing_table_size gauge\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\nhivemind_dht_routing_table_size 0\n"), std::string::npos) << body;
  EXPECT_NE(body.find("# TYPE hivemind_dht_requests_received_total counter\n"), std::string::npos)
      << body;
  EXPECT_NE(body.find("\nhivemind_dht_requests_received_total 0\n"), std::string::npos) << body;

  // A node joins through it: its bootstrap requests were answered before start() returned.
  auto addresses = wait_for_bootstrap_file(file, Deadline::after(std::chrono::seconds(20)));
  ASSERT_TRUE(addresses.is_ok()) << addresses.status().to_string();
  DhtOptions options;
  options.listen = "tcp://127.0.0.1:0";
  options.initial_peers = {addresses->front()};
  auto joined = Dht::start(options);
  ASSERT_TRUE(joined.is_ok()) << joined.status().to_string();
  body = scrape(curl, url);
  EXPECT_NE(body.find("\nhivemind_dht_requests_received_total "), std::string::npos) << body;
  EXPECT_EQ(body.find("\nhivemind_dht_requests_received_total 0\n"), std::string::npos) << body;
  EXPECT_EQ(body.find("\nhivemind_dht_bytes_received_total 0\n"), std::string::npos) << body;

  // SIGTERM: the node stops serving its metrics before it drops the node they read, and exits 0.
  node->signal(SIGTERM);
  auto code = node->wait(Deadline::after(std::chrono::seconds(20)));
  ASSERT_TRUE(code.is_ok()) << code.status().to_string();
  EXPECT_EQ(*code, 0);
}

}  // namespace
}  // namespace hivemind::dht
