// soak_trainer: one trainer process of scripts/soak.sh. It finds the swarm's experts in the DHT
// and, for
// --seconds, calls them in turn (forward, then backward on the same inputs) through
// RpcExpertCaller, accounting for every request: answered (shape checked, finite), failed with an
// explicit error (counted by status code), or lost (no completion by its deadline plus a grace
// period: must never happen). Prints one "soak_trainer: ..." summary line; exits 0 when nothing was
// lost, failed or malformed.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/client/dht_expert_directory.h>
#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/logging.h>
#include <hivemind/dht/dht.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/worker.h>

using hivemind::Deadline;
using hivemind::Milliseconds;

namespace {

// Waits for one callback with a deadline: a request that never completes shows up as nullopt. The
// state is shared with the callback, which may still run after a waiter gave up on it.
class OneShot {
 public:
  hivemind::client::ExpertCallback callback() {
    return [state = state_](hivemind::Result<std::vector<torch::Tensor>> r) {
      std::lock_guard lock(state->mutex);
      state->result.emplace(std::move(r));
      state->cv.notify_all();
    };
  }
  std::optional<hivemind::Result<std::vector<torch::Tensor>>> wait(Milliseconds timeout) {
    std::unique_lock lock(state_->mutex);
    state_->cv.wait_for(lock, timeout, [this] { return state_->result.has_value(); });
    return std::move(state_->result);
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    std::optional<hivemind::Result<std::vector<torch::Tensor>>> result;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace

int main(int argc, char** argv) {
  std::string bootstrap_file, host = "127.0.0.1", prefix = "expert";
  std::vector<int64_t> grid{2, 4};
  int64_t hidden = 64, batch = 32;
  double seconds = 60, request_timeout_s = 10;
  uint64_t seed = 1;
  CLI::App app{
      "soak_trainer: calls every expert of a swarm for a while and accounts for every request"};
  app.add_option("--bootstrap-file", bootstrap_file)->required();
  app.add_option("--host", host)->capture_default_str();
  app.add_option("--uid-prefix", prefix)->capture_default_str();
  app.add_option("--grid", grid)->delimiter(',')->capture_default_str();
  app.add_option("--hidden-dim", hidden)->capture_default_str();
  app.add_option("--batch-size", batch)->capture_default_str();
  app.add_option("--seconds", seconds)->capture_default_str();
  app.add_option("--request-timeout", request_timeout_s)->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "soak_trainer: %s\n", logging.to_string().c_str());
    return 2;
  }
  auto log = hivemind::logger("soak");
  torch::set_num_threads(1);
  if (grid.size() != 2) {
    std::fprintf(stderr, "soak_trainer: --grid needs two sizes\n");
    return 2;
  }

  auto peers =
      hivemind::wait_for_bootstrap_file(bootstrap_file, Deadline::after(std::chrono::seconds(30)));
  if (!peers.is_ok()) {
    log->error("{}", peers.status().to_string());
    return 1;
  }
  auto context = hivemind::transport::Context::create(
                     hivemind::transport::ContextOptions::from_env().value_or_throw())
                     .value_or_throw();
  auto worker = hivemind::transport::Worker::create(context, "soak-io").value_or_throw();
  auto rpc = hivemind::transport::rpc::Client::create(worker);
  hivemind::dht::DhtOptions dopt;
  dopt.listen = "tcp://" + host + ":0";
  dopt.initial_peers = *peers;
  dopt.node.client_mode = true;
  dopt.worker = worker;
  dopt.client = rpc;
  auto started = hivemind::dht::Dht::start(dopt);
  if (!started.is_ok()) {
    log->error("joining the DHT: {}", started.status().to_string());
    return 1;
  }
  std::shared_ptr<hivemind::dht::Dht> dht(std::move(started).value());
  hivemind::dht::SuccessorOptions successors;
  successors.grid_size = static_cast<int>(grid[1]);
  successors.negative_caching = false;
  hivemind::client::DhtExpertDirectory directory(dht, successors);
  std::vector<std::string> prefixes;
  for (int64_t i = 0; i < grid[0]; ++i)
    prefixes.push_back(prefix + "." + std::to_string(i) + ".");

  // Wait until the whole grid is declared (the servers start at the same time as we do).
  std::vector<hivemind::client::ExpertAddress> experts;
  const auto wanted = static_cast<size_t>(grid[0] * grid[1]);
  const Deadline ready = Deadline::after(std::chrono::seconds(60));
  while (experts.size() < wanted) {
    experts.clear();
    auto found = directory.get_active_successors(prefixes, Deadline::after(Milliseconds(5000)));
    if (found.is_ok())
      for (const auto& level : *found)
        for (const auto& [coord, ref] : level)
          experts.push_back(ref);
    if (experts.size() >= wanted) break;
    if (ready.expired()) {
      log->error("only {} of {} experts appeared in the DHT", experts.size(), wanted);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // polling a remote service
  }

  auto caller = hivemind::client::RpcExpertCaller::create(rpc);
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  const Milliseconds timeout(static_cast<int64_t>(request_timeout_s * 1000));
  const Milliseconds grace(
      5000);  // past the request's own deadline: the caller must have completed it
  uint64_t answered = 0, failed = 0, lost = 0, malformed = 0;
  std::map<std::string, uint64_t> errors;
  std::vector<double> latencies_ms;
  auto account = [&](const char* what, const hivemind::client::ExpertAddress& e,
                     std::optional<hivemind::Result<std::vector<torch::Tensor>>> r,
                     int64_t rows) -> bool {
    if (!r) {
      ++lost;
      log->error("{} to {} at {}: no completion {} ms past its deadline", what, e.uid, e.endpoint,
                 grace.count());
      return false;
    }
    if (!r->is_ok()) {
      ++failed;
      ++errors[std::string(hivemind::status_code_name(r->status().code()))];
      log->warn("{} to {}: {}", what, e.uid, r->status().to_string());
      return false;
    }
    const auto& out = r->value();
    if (out.size() != 1 || out[0].size(0) != rows || out[0].size(1) != hidden ||
        !torch::isfinite(out[0]).all().item<bool>()) {
      ++malformed;
      log->error("{} to {}: malformed answer", what, e.uid);
      return false;
    }
    ++answered;
    return true;
  };

  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(seconds));
  size_t next = 0;
  while (std::chrono::steady_clock::now() < end) {
    const auto& e = experts[next++ % experts.size()];
    torch::Tensor x = torch::randn({batch, hidden}, gen);
    const auto t0 = std::chrono::steady_clock::now();
    OneShot fwd;
    caller->forward(e, {x}, Deadline::after(timeout), fwd.callback());
    if (!account("forward", e, fwd.wait(timeout + grace), batch)) continue;
    OneShot bwd;
    caller->backward(e, {x}, {torch::randn({batch, hidden}, gen)}, Deadline::after(timeout),
                     bwd.callback());
    account("backward", e, bwd.wait(timeout + grace), batch);
    latencies_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty() ? 0.0
                                : latencies_ms[static_cast<size_t>(
                                      p * static_cast<double>(latencies_ms.size() - 1))];
  };
  std::string error_text;
  for (const auto& [code, n] : errors)
    error_text += " " + code + "=" + std::to_string(n);
  std::printf(
      "soak_trainer: requests=%llu answered=%llu failed=%llu lost=%llu malformed=%llu "
      "round_trip_ms_p50=%.1f p99=%.1f errors:%s\n",
      (unsigned long long)(answered + failed + lost + malformed), (unsigned long long)answered,
      (unsigned long long)failed, (unsigned long long)lost, (unsigned long long)malformed, pct(0.5),
      pct(0.99), error_text.empty() ? " none" : error_text.c_str());
  std::fflush(stdout);
  dht.reset();
  return lost == 0 && failed == 0 && malformed == 0 && answered > 0 ? 0 : 1;
}
