// hivemind-demo: a trainer whose model has a RemoteMixtureOfExperts layer, trained on the synthetic
// classification task against a live swarm (a DHT and expert servers, e.g. started by
// scripts/demo.sh).
//
//   model:  x -> Linear(features, hidden) -> ReLU -> RemoteMixtureOfExperts(hidden, grid) ->
//           Linear(hidden, classes)
//   prints: step, loss, batch accuracy, samples/s and live experts as it goes; held-out accuracy
//           every --eval-every steps; stops at --target-accuracy or after --steps.
//   --kill-at STEP --kill-pid PID: SIGKILLs that process mid-run (an expert server: training goes
//           on around its dead experts; another trainer: the others go on training and averaging).
//   --average-key KEY: data-parallel trainers (one per --trainer-index, same --seed) average their
//           dense parameters (input and output layers, the gate) with every live trainer under KEY
//           every --average-every steps (docs/averaging.md).
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <signal.h>
#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/averaging/torch_averager.h>
#include <hivemind/client/dht_expert_directory.h>
#include <hivemind/client/metered_expert_caller.h>
#include <hivemind/client/remote_moe.h>
#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/common/blas_check.h>
#include <hivemind/common/initial_peers.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/metrics_http_server.h>
#include <hivemind/common/version.h>
#include <hivemind/dht/dht.h>
#include <hivemind/dht/dht_metrics.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/swarm_key_flag.h>
#include <hivemind/transport/worker.h>

#include "synthetic_task.h"

namespace {

struct DemoOptions {
  std::vector<std::string> initial_peers;
  std::string bootstrap_file;
  std::string listen = "tcp://127.0.0.1:0";
  std::string uid_prefix = "expert";
  std::vector<int64_t> grid = {4, 4};
  int64_t hidden = 64;
  int64_t k_best = 4;
  int64_t batch_size = 128;
  int64_t steps = 600;
  double lr = 3e-3;
  int64_t eval_every = 25;
  double target_accuracy = 0.95;
  int64_t kill_server_at = -1;
  int kill_pid = 0;
  double forward_timeout_s = 10.0;
  double timeout_after_k_min_s = 1.0;
  int64_t wait_experts = 0;  // wait until this many experts are live before training
  double wait_experts_timeout_s = 60.0;
  uint64_t seed = 1;  // the model's initial weights: the same for every data-parallel trainer
  int64_t trainer_index = 0;  // which slice of the data stream this trainer reads
  std::string average_key;    // empty: no averaging
  int64_t average_every = 5;
  double average_timeout_s = 10.0;
  int metrics_port = -1;  // serve the trainer's metrics at http://<metrics_host>:<port>/metrics
  std::string metrics_host = "127.0.0.1";
};

class Model : public torch::nn::Module {
 public:
  Model(const DemoOptions& o, int64_t features, int64_t classes,
        std::shared_ptr<hivemind::client::ExpertDirectory> directory,
        std::shared_ptr<hivemind::client::ExpertCaller> caller) {
    hivemind::client::RemoteMixtureOfExpertsOptions moe;
    moe.in_features = o.hidden;
    moe.grid_size = o.grid;
    moe.uid_prefix = o.uid_prefix;
    moe.k_best = o.k_best;
    moe.k_min = 1;
    moe.backward_k_min = 1;
    // A sample whose chosen experts all died still trains its gate and local layers.
    moe.allow_zero_outputs = true;
    moe.forward_timeout = hivemind::Milliseconds(static_cast<int64_t>(o.forward_timeout_s * 1000));
    moe.backward_timeout = moe.forward_timeout;
    moe.timeout_after_k_min =
        hivemind::Milliseconds(static_cast<int64_t>(o.timeout_after_k_min_s * 1000));
    input = register_module("input", torch::nn::Linear(features, o.hidden));
    experts = register_module("experts",
                              hivemind::client::RemoteMixtureOfExperts(moe, directory, caller));
    output = register_module("output", torch::nn::Linear(o.hidden, classes));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return output->forward(experts->forward(torch::relu(input->forward(x))));
  }

  torch::nn::Linear input{nullptr};
  hivemind::client::RemoteMixtureOfExperts experts{nullptr};
  torch::nn::Linear output{nullptr};
};

// Experts the DHT currently lists under the grid (one directory round over the first dimension,
// then one over the second, as beam search does).
int64_t count_live_experts(hivemind::client::ExpertDirectory& directory, const DemoOptions& o) {
  std::vector<std::string> prefixes;
  for (int64_t i = 0; i < o.grid[0]; ++i)
    prefixes.push_back(o.uid_prefix + "." + std::to_string(i) + ".");
  auto found = directory.get_active_successors(
      prefixes, hivemind::Deadline::after(hivemind::Milliseconds(5000)));
  if (!found.is_ok()) return -1;
  int64_t count = 0;
  for (const auto& level : *found)
    count += static_cast<int64_t>(level.size());
  return count;
}

}  // namespace

int main(int argc, char** argv) {
  DemoOptions o;
  CLI::App app{
      "hivemind-demo: trains a model with a RemoteMixtureOfExperts layer against a live swarm"};
  app.set_version_flag("--version", hivemind::version_line("hivemind-demo"));
  app.add_option("--initial_peers,--initial-peers", o.initial_peers,
                 "DHT peers to join: tcp://HOST:PORT, /ip4/HOST/tcp/PORT[/p2p/ID], or auto (the "
                 "head node of the Slurm allocation, port 31337)")
      ->envname("HIVEMIND_INITIAL_PEERS")
      ->delimiter(',');
  app.add_option("--bootstrap-file,--bootstrap_file", o.bootstrap_file,
                 "read the initial peer from this file (written by hivemind-dht), waiting for it")
      ->envname("HIVEMIND_BOOTSTRAP_FILE");
  app.add_option("--listen", o.listen, "this trainer's DHT/transport address")
      ->capture_default_str();
  app.add_option("--uid_prefix,--uid-prefix", o.uid_prefix, "expert uid prefix")
      ->capture_default_str();
  app.add_option("--grid", o.grid, "expert grid size per dimension")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--hidden_dim,--hidden-dim", o.hidden, "expert hidden size")
      ->capture_default_str();
  app.add_option("--k_best,--k-best", o.k_best, "experts per sample")->capture_default_str();
  app.add_option("--batch_size,--batch-size", o.batch_size)->capture_default_str();
  app.add_option("--steps", o.steps, "maximum training steps")->capture_default_str();
  app.add_option("--lr", o.lr, "trainer learning rate (gate and local layers)")
      ->capture_default_str();
  app.add_option("--eval-every", o.eval_every)->capture_default_str();
  app.add_option("--target-accuracy", o.target_accuracy, "stop once held-out accuracy reaches this")
      ->capture_default_str();
  app.add_option("--kill-at,--kill-server-at", o.kill_server_at, "SIGKILL --kill-pid at this step");
  app.add_option("--kill-pid", o.kill_pid, "the process (an expert server, a trainer) to kill");
  app.add_option("--forward-timeout", o.forward_timeout_s)->capture_default_str();
  app.add_option("--timeout-after-k-min", o.timeout_after_k_min_s)->capture_default_str();
  app.add_option("--wait-experts", o.wait_experts, "wait until this many experts are live")
      ->capture_default_str();
  app.add_option("--wait-experts-timeout", o.wait_experts_timeout_s)->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the model's initial weights (and of the data)")
      ->capture_default_str();
  app.add_option("--trainer-index,--trainer_index", o.trainer_index,
                 "data-parallel trainers with the same --seed start from the same weights and "
                 "read different batches: this one's index")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--average-key,--average_key", o.average_key,
                 "average the dense parameters with every trainer averaging under this key (found "
                 "through the DHT); empty: train alone");
  app.add_option("--average-every,--average_every", o.average_every,
                 "steps between averaging rounds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--average-timeout,--average_timeout", o.average_timeout_s,
                 "seconds an averaging round may take before it counts as failed")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--metrics-port,--metrics_port", o.metrics_port,
                 "serve the trainer's Prometheus metrics (expert calls by method, failures by "
                 "reason, latency; its DHT node) at http://<metrics-host>:<port>/metrics (0: any "
                 "free port, -1: off)")
      ->envname("HIVEMIND_METRICS_PORT")
      ->check(CLI::Range(-1, 65535))
      ->capture_default_str();
  app.add_option("--metrics-host,--metrics_host", o.metrics_host,
                 "address of the metrics endpoint (127.0.0.1: this host only; 0.0.0.0: every "
                 "interface)")
      ->envname("HIVEMIND_METRICS_HOST")
      ->capture_default_str();
  std::string swarm_key_file;
  app.add_option("--swarm-key-file,--swarm_key_file", swarm_key_file,
                 "swarm key (0600 file from hivemind-info --new-swarm-key) shared with the servers")
      ->envname("HIVEMIND_SWARM_KEY_FILE");
  CLI11_PARSE(app, argc, argv);

  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "hivemind-demo: %s\n", logging.to_string().c_str());
    return 2;
  }
  if (hivemind::Status key = hivemind::transport::adopt_swarm_key_file(swarm_key_file);
      !key.is_ok()) {
    std::fprintf(stderr, "hivemind-demo: %s\n", key.to_string().c_str());
    return 2;
  }
  auto log = hivemind::logger("demo");
  torch::manual_seed(static_cast<uint64_t>(o.seed));
  torch::set_num_threads(1);  // the trainer's math is small; leave the cores to the expert servers
  if (o.grid.size() != 2 || (o.kill_server_at >= 0 && o.kill_pid <= 0)) {
    std::fprintf(stderr, "hivemind-demo: --grid needs two sizes, and --kill-at needs --kill-pid\n");
    return 2;
  }

  hivemind::InitialPeersOptions peer_options;
  peer_options.initial_peers = o.initial_peers;
  peer_options.bootstrap_file = o.bootstrap_file;
  auto resolved = hivemind::gather_initial_peers(peer_options);
  if (!resolved.is_ok()) {
    log->error("{}", resolved.status().to_string());
    return resolved.status().code() == hivemind::StatusCode::kInvalidArgument ? 2 : 1;
  }
  if (resolved->empty()) {
    std::fprintf(stderr, "hivemind-demo: give --initial_peers or --bootstrap-file\n");
    return 2;
  }

  // Before the transport: a call still in flight while the worker shuts down counts into it.
  hivemind::MetricsRegistry metrics;
  auto context = hivemind::transport::Context::create(
                     hivemind::transport::ContextOptions::from_env().value_or_throw())
                     .value_or_throw();
  auto worker = hivemind::transport::Worker::create(context, "demo-io").value_or_throw();
  auto rpc = hivemind::transport::rpc::Client::create(worker);
  hivemind::dht::DhtOptions dht_options;
  dht_options.listen = o.listen;
  dht_options.initial_peers = *resolved;
  dht_options.bootstrap_timeout = std::chrono::seconds(30);
  dht_options.node.client_mode = true;  // a trainer asks; it stores nothing for others
  dht_options.worker = worker;
  dht_options.client = rpc;
  auto dht = hivemind::dht::Dht::start(dht_options);
  if (!dht.is_ok()) {
    log->error("cannot join the DHT: {}", dht.status().to_string());
    return 1;
  }
  std::shared_ptr<hivemind::dht::Dht> shared_dht(std::move(dht).value_or_throw());
  hivemind::dht::SuccessorOptions successors;
  successors.grid_size = static_cast<int>(o.grid[1]);
  successors.negative_caching = false;  // the demo watches experts die: always ask the DHT
  auto directory = std::make_shared<hivemind::client::DhtExpertDirectory>(shared_dht, successors);
  // Every expert call is counted (a few relaxed atomics each), served or not.
  auto caller = hivemind::client::MeteredExpertCaller::create(
      hivemind::client::RpcExpertCaller::create(rpc), metrics);
  // After the DHT node, so stopped before it goes: its scrape callbacks read the node.
  std::unique_ptr<hivemind::MetricsHttpServer> metrics_http;
  if (o.metrics_port >= 0) {
    hivemind::dht::register_dht_metrics(metrics, *shared_dht);
    hivemind::MetricsHttpServerOptions http;
    http.bind_address = o.metrics_host;
    http.port = static_cast<uint16_t>(o.metrics_port);
    auto served = hivemind::MetricsHttpServer::start(metrics, http);
    if (!served.is_ok()) {
      std::fprintf(stderr, "hivemind-demo: --metrics-port: %s\n",
                   served.status().to_string().c_str());
      return 2;
    }
    metrics_http = std::move(served).value();
    std::printf("hivemind-demo: metrics at http://%s/metrics\n", metrics_http->address().c_str());
    std::fflush(stdout);
  }

  int64_t total_experts = o.grid[0] * o.grid[1];
  if (o.wait_experts > 0) {
    auto deadline = hivemind::Deadline::after(
        hivemind::Milliseconds(static_cast<int64_t>(o.wait_experts_timeout_s * 1000)));
    int64_t live = 0;
    while ((live = count_live_experts(*directory, o)) < o.wait_experts) {
      if (deadline.expired()) {
        log->error("only {} of the {} expected experts appeared in the DHT in {} s", live,
                   o.wait_experts, o.wait_experts_timeout_s);
        return 1;
      }
      std::this_thread::sleep_for(
          std::chrono::milliseconds(200));  // polling a remote service, not syncing threads
    }
  }

  hivemind::demo::SyntheticTask task;
  Model model(o, task.options().features, task.options().classes, directory, caller);
  torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(o.lr));
  hivemind::warn_if_slow_blas();

  // Data-parallel trainers keep their dense parameters (everything but the remote experts) in step
  // by averaging them every --average-every steps with whoever is averaging under the key.
  std::unique_ptr<hivemind::averaging::TorchAverager> averager;
  if (!o.average_key.empty()) {
    hivemind::averaging::AveragerOptions averaging;
    averaging.key = o.average_key;
    averaging.dht = shared_dht.get();
    averaging.worker = worker;
    averaging.client = rpc;
    averaging.listen = o.listen;
    averaging.round_timeout =
        hivemind::Milliseconds(static_cast<int64_t>(o.average_timeout_s * 1000));
    auto created = hivemind::averaging::TorchAverager::create(model.parameters(), averaging);
    if (!created.is_ok()) {
      log->error("cannot start averaging under '{}': {}", o.average_key,
                 created.status().to_string());
      return 1;
    }
    averager = std::move(created).value();
    std::printf(
        "hivemind-demo: trainer %lld averages its dense parameters under '%s' every %lld "
        "steps (%s)\n",
        (long long)o.trainer_index, o.average_key.c_str(), (long long)o.average_every,
        averager->endpoint().c_str());
    std::fflush(stdout);
  }
  auto [eval_x, eval_y] = task.batch(1024, /*generator_seed=*/999'999);

  std::printf(
      "hivemind-demo: %lld-class task, %lld features; MoE grid %lldx%lld, k_best %lld, batch %lld; "
      "%lld experts declared in the DHT\n",
      (long long)task.options().classes, (long long)task.options().features, (long long)o.grid[0],
      (long long)o.grid[1], (long long)o.k_best, (long long)o.batch_size,
      (long long)count_live_experts(*directory, o));
  std::fflush(stdout);

  auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  int64_t window_samples = 0;
  double best_accuracy = 0;
  bool reached = false;
  size_t last_answering = 0;  // experts that answered the last reported batch
  int64_t step = 1;
  for (; step <= o.steps; ++step) {
    if (step == o.kill_server_at) {
      std::printf("step %4lld: killing pid %d (SIGKILL); training continues without it\n",
                  (long long)step, o.kill_pid);
      std::fflush(stdout);
      ::kill(o.kill_pid, SIGKILL);
    }
    model.train();
    auto [x, y] = task.batch(o.batch_size, o.seed * 1'000'003 +
                                               static_cast<uint64_t>(o.trainer_index) * 7'919'000 +
                                               static_cast<uint64_t>(step));
    torch::Tensor logits;
    try {
      logits = model.forward(x);
    } catch (const std::exception& e) {
      log->warn("step {}: forward failed, skipping the batch: {}", step, e.what());
      continue;
    }
    auto loss = torch::nn::functional::cross_entropy(logits, y);
    optimizer.zero_grad();
    try {
      loss.backward();
    } catch (const std::exception& e) {
      log->warn("step {}: backward failed, skipping the update: {}", step, e.what());
      continue;
    }
    optimizer.step();
    window_samples += o.batch_size;
    if (averager && step % o.average_every == 0) {
      // Blocking on purpose: the optimizer must not move the parameters while they are averaged.
      // A failed round leaves them as they were; training goes on and the next round retries.
      hivemind::averaging::RoundReport round = averager->step();
      if (round.ok) {
        std::printf("step %4lld  averaged with %zu trainer(s) over %s in %lld ms\n",
                    (long long)step, round.members.size(), round.backend.c_str(),
                    (long long)round.elapsed.count());
      } else {
        std::printf("step %4lld  averaging round failed, training on: %s\n", (long long)step,
                    round.failure.c_str());
      }
      std::fflush(stdout);
    }

    bool report = step % 10 == 0 || step == 1;
    // The last step always evaluates, so a run shorter than --eval-every still reports a held-out
    // figure.
    bool evaluate = step % o.eval_every == 0 || step == o.steps;
    if (report || evaluate) {
      double accuracy = (logits.argmax(1) == y).to(torch::kFloat).mean().item<double>();
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const auto& routing = model.experts->last_routing();
      std::set<std::string> answered;
      auto mask = routing.mask.defined() ? routing.mask.to(torch::kCPU) : torch::Tensor();
      for (size_t s = 0; s < routing.chosen.size(); ++s) {
        for (size_t k = 0; k < routing.chosen[s].size(); ++k) {
          if (mask.defined() && mask[s][k].item<bool>())
            answered.insert(routing.chosen[s][k].expert.uid);
        }
      }
      std::string eval_text;
      if (evaluate) {
        torch::NoGradGuard no_grad;
        model.eval();
        try {
          double eval_accuracy =
              (model.forward(eval_x).argmax(1) == eval_y).to(torch::kFloat).mean().item<double>();
          best_accuracy = std::max(best_accuracy, eval_accuracy);
          eval_text = fmt::format("  held-out acc {:.3f}", eval_accuracy);
          reached = eval_accuracy >= o.target_accuracy;
        } catch (const std::exception& e) {
          eval_text = std::string("  held-out eval failed: ") + e.what();
        }
      }
      last_answering = answered.size();
      std::printf(
          "step %4lld  loss %.4f  batch acc %.3f  %7.1f samples/s  experts answering %zu/%lld%s\n",
          (long long)step, loss.item<double>(), accuracy, window_samples / std::max(seconds, 1e-9),
          answered.size(), (long long)total_experts, eval_text.c_str());
      std::fflush(stdout);
      window_start = std::chrono::steady_clock::now();
      window_samples = 0;
      if (reached) break;
    }
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // A killed server's experts stay declared until their records expire (as in hivemind): the DHT
  // count can exceed the experts that answered.
  std::printf(
      "hivemind-demo: %s held-out accuracy %.3f after %lld steps in %.1f s (target %.2f); %zu "
      "experts "
      "answered the last batch, %lld declared in the DHT\n",
      reached ? "reached" : "did NOT reach", best_accuracy, (long long)std::min(step, o.steps),
      elapsed, o.target_accuracy, last_answering, (long long)count_live_experts(*directory, o));
  return reached ? 0 : 3;
}
