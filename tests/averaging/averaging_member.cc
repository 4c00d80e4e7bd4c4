// averaging_member: one member of an averaging group in its own process, for the multi-process
// tests (spawned by averaging_process_test, or started N times by mpirun).
//
// Member r's tensors are {elements values x_r[i] = 1 + r + (i % 97) / 64, one value 3 (r + 1)}.
// The driver says, before each round, what every tensor should hold after it as weights over the
// ranks' initial tensors ("0:0.5,1:0.5"); the member compares in double precision and prints the
// largest relative error, so the driver checks exact means, unchanged tensors after a failed
// round, and the means of later rounds alike.
//
// Commands on stdin, one per line (spawned mode):
//   step WEIGHTS   one round; prints "report ok=0|1 round=R members=N max_rel_err=E failure=..."
//   stall          the next round stops inside the backend after printing "in-round" (a member
//                  killed or stopped mid-round by the driver)
// Every member prints "entering-round R" when its backend starts a round.
// End of input closes the averager and exits 0. With --rounds N (mpirun) it runs N rounds with
// equal weights over every rank instead, and exits 1 unless every round was exact.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include <hivemind/averaging/averager.h>
#include <hivemind/averaging/default_backends.h>
#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/dht/dht.h>
#include <hivemind/transport/context.h>

namespace {

using namespace hivemind;
using namespace hivemind::averaging;

float initial_value(int rank, size_t i) {
  return 1.0f + static_cast<float>(rank) + static_cast<float>(i % 97) / 64.0f;
}

// Holds a member inside its round: prints "in-round" and waits for a signal that never comes.
class StallingBackend final : public Backend {
 public:
  StallingBackend(std::shared_ptr<Backend> inner, std::atomic<bool>& armed)
      : inner_(std::move(inner)), armed_(armed) {}
  std::string_view name() const override { return inner_->name(); }
  bool usable_for(std::span<const TensorRef> tensors, std::string& device_id) const override {
    return inner_->usable_for(tensors, device_id);
  }
  Result<std::vector<uint8_t>> leader_setup(const Group& group) override {
    return inner_->leader_setup(group);
  }
  Status all_reduce_mean(const Group& group, std::span<const TensorRef> tensors, Deadline deadline,
                         RoundReport& report) override {
    // Every member says when it entered a round's data plane, so the driver can stop a member
    // once every other one holds the group too.
    std::printf("entering-round %llu\n", static_cast<unsigned long long>(group.round));
    std::fflush(stdout);
    if (armed_.exchange(false)) {
      std::printf("in-round %llu\n", static_cast<unsigned long long>(group.round));
      std::fflush(stdout);
      for (;;)
        ::pause();  // until the driver kills it (or stops it, then kills it)
    }
    return inner_->all_reduce_mean(group, tensors, deadline, report);
  }

 private:
  std::shared_ptr<Backend> inner_;
  std::atomic<bool>& armed_;
};

std::map<int, double> parse_weights(const std::string& text) {
  std::map<int, double> weights;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto colon = item.find(':');
    if (colon == std::string::npos) continue;
    weights[std::stoi(item.substr(0, colon))] = std::stod(item.substr(colon + 1));
  }
  return weights;
}

double max_relative_error(const std::vector<float>& a, const std::vector<float>& b,
                          const std::map<int, double>& weights) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double expected = 0;
    for (const auto& [rank, w] : weights)
      expected += w * initial_value(rank, i);
    worst = std::max(worst, std::abs(a[i] - expected) / std::abs(expected));
  }
  double expected = 0;
  for (const auto& [rank, w] : weights)
    expected += w * 3.0 * (rank + 1);
  return std::max(worst, std::abs(b[0] - expected) / std::abs(expected));
}

void print_report(const RoundReport& report, double error) {
  std::printf("report ok=%d round=%llu members=%zu max_rel_err=%.3g failure=%s\n",
              report.ok ? 1 : 0, static_cast<unsigned long long>(report.round),
              report.members.size(), error, report.failure.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"averaging_member: one member of an averaging group (multi-process tests)"};
  std::string key = "test.dense", dht_peer, bootstrap_file;
  int rank = -1, size = 0, rounds = 0;
  size_t elements = 7;
  int64_t round_timeout_ms = 20000, gather_window_ms = 4000;
  app.add_option("--key", key);
  app.add_option("--dht-peer", dht_peer, "membership through the DHT: a node to join");
  app.add_option("--bootstrap-file", bootstrap_file,
                 "membership from the launcher: where rank 0 publishes its endpoint");
  app.add_option("--rank", rank, "this member's rank (also picks its values)");
  app.add_option("--size", size, "launcher membership: the number of ranks");
  app.add_option("--elements", elements, "elements of the first tensor");
  app.add_option("--round-timeout-ms", round_timeout_ms);
  app.add_option("--gather-window-ms", gather_window_ms);
  app.add_option("--rounds", rounds, "run this many rounds over every rank and exit (mpirun)");
  CLI11_PARSE(app, argc, argv);
  if (auto status = configure_logging_from_env(); !status.is_ok()) {
    std::fprintf(stderr, "%s\n", status.to_string().c_str());
    return 2;
  }

  AveragerOptions options;
  options.key = key;
  options.round_timeout = Milliseconds(round_timeout_ms);
  options.gather_window = Milliseconds(gather_window_ms);
  std::unique_ptr<dht::Dht> dht;
  if (!dht_peer.empty()) {
    dht::DhtOptions dht_options;
    dht_options.initial_peers = {dht_peer};
    auto started = dht::Dht::start(dht_options);
    if (!started.is_ok()) {
      std::fprintf(stderr, "dht: %s\n", started.status().to_string().c_str());
      return 1;
    }
    dht = std::move(started).value();
    options.dht = dht.get();
  } else {
    options.launcher = LauncherGroupOptions{rank, size, bootstrap_file};
  }
  if (rank < 0) {  // launcher variables: the values follow the launcher's rank
    auto launch = read_launch_info();
    if (launch.is_ok()) rank = launch->rank;
    if (size <= 0 && launch.is_ok()) size = launch->world_size;
  }

  // The default backends, each able to stall on command.
  std::atomic<bool> stall{false};
  auto worker = transport::Worker::create(*transport::Context::create());
  if (!worker.is_ok()) return 1;
  auto server = transport::rpc::Server::create(*worker, "tcp://127.0.0.1:0");
  if (!server.is_ok()) return 1;
  auto client = transport::rpc::Client::create(*worker);
  options.worker = *worker;
  options.server = *server;
  options.client = client;
  for (auto& backend : default_backends(BackendEnvironment{*worker, *server, client, {}}))
    options.backends.push_back(std::make_shared<StallingBackend>(backend, stall));

  std::vector<float> a(elements), b = {3.0f * static_cast<float>(rank + 1)};
  for (size_t i = 0; i < elements; ++i)
    a[i] = initial_value(rank, i);
  auto averager = Averager::create({TensorRef{a.data(), a.size()}, TensorRef{b.data(), b.size()}},
                                   std::move(options));
  if (!averager.is_ok()) {
    std::printf("error %s\n", averager.status().to_string().c_str());
    std::fflush(stdout);
    return 1;
  }
  std::printf("ready %s\n", (*averager)->endpoint().c_str());
  std::fflush(stdout);

  if (rounds > 0) {
    std::map<int, double> weights;
    for (int r = 0; r < size; ++r)
      weights[r] = 1.0 / size;
    bool all_exact = true;
    for (int round = 0; round < rounds; ++round) {
      RoundReport report = (*averager)->step();
      double error = max_relative_error(a, b, weights);
      print_report(report, error);
      all_exact = all_exact && report.ok && report.members.size() == static_cast<size_t>(size) &&
                  error <= 1e-6;
    }
    (*averager)->close();
    std::printf("rank %d: %s\n", rank, all_exact ? "every round exact" : "FAILED");
    return all_exact ? 0 : 1;
  }

  std::string line;
  while (std::getline(std::cin, line)) {
    if (line == "stall") {
      stall = true;
    } else if (line.rfind("step ", 0) == 0) {
      auto weights = parse_weights(line.substr(5));
      RoundReport report = (*averager)->step();
      print_report(report, max_relative_error(a, b, weights));
    }
  }
  (*averager)->close();
  return 0;
}
