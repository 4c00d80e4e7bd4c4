// A minimal trainer that links hivemind directly: a LibTorch model whose middle layer is an expert
// hosted by a hivemind-server, trained end to end (the local layers by a local Adam, the remote
// expert by its server's optimizer, one step per backward call). Installed as
// hivemind-example-trainer; built on its own against an installed package as
// hivemind_trainer_example.
//
//   hivemind-example-trainer --server tcp://127.0.0.1:24510 [--uid expert.0] [--hidden 64]
//                            [--steps 30] [--batch 64]
//   hivemind-example-trainer (--initial_peers ADDR[,ADDR...] | --initial_peers auto |
//                             --bootstrap_file FILE) [--wait 60] [--uid expert.0.0] ...
//
// The expert is either dialled at --server, or looked up in the swarm's DHT (joined through the
// initial peers or the bootstrap file; HIVEMIND_INITIAL_PEERS and HIVEMIND_BOOTSTRAP_FILE when the
// flags are absent, as the Slurm templates set them), waiting up to --wait seconds for a server to
// declare it. The server must host `uid` with `--hidden_dim` equal to --hidden, e.g.
//   hivemind-server --expert_uids expert.0 --hidden_dim 64 --host 127.0.0.1 --port 24510
// Exits 0 when every step ran and the loss went down on the fixed training batch.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/client/remote_expert.h>
#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/common/initial_peers.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/text.h>
#include <hivemind/common/version.h>
#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/swarm_key_flag.h>
#include <hivemind/transport/worker.h>

namespace {

struct Model : torch::nn::Module {
  Model(int64_t features, int64_t hidden, hivemind::client::RemoteExpert expert)
      : in(register_module("in", torch::nn::Linear(features, hidden))),
        remote(register_module("remote", expert)),
        out(register_module("out", torch::nn::Linear(hidden, 1))) {}

  torch::Tensor forward(const torch::Tensor& x) { return out(remote(torch::relu(in(x)))); }

  torch::nn::Linear in;
  hivemind::client::RemoteExpert remote;
  torch::nn::Linear out;
};

int usage() {
  std::fprintf(stderr,
               "usage: hivemind-example-trainer (--server ADDRESS | --initial_peers ADDR[,ADDR...] "
               "| --initial_peers auto | --bootstrap_file FILE) [--wait 60] [--uid expert.0] "
               "[--hidden 64] [--steps 30] [--batch 64] [--swarm_key_file FILE]\n");
  return 2;
}

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? std::optional<std::string>(value) : std::nullopt;
}

// The server of `uid`, from the DHT of the swarm: joins it as a client (it stores nothing for
// others) and asks until a server has declared the expert or `wait` has passed.
hivemind::Result<std::string> find_expert_server(
    const std::string& uid, const hivemind::InitialPeersOptions& peer_options,
    std::chrono::seconds wait, const std::shared_ptr<hivemind::transport::Worker>& worker,
    const std::shared_ptr<hivemind::transport::rpc::Client>& rpc) {
  HIVEMIND_ASSIGN_OR_RETURN(std::vector<std::string> peers,
                            hivemind::gather_initial_peers(peer_options));
  if (peers.empty())
    return hivemind::invalid_argument_error("no initial peer given (and no bootstrap file)");
  hivemind::dht::DhtOptions options;
  options.initial_peers = peers;
  options.node.client_mode = true;
  options.worker = worker;
  options.client = rpc;
  HIVEMIND_ASSIGN_OR_RETURN(std::unique_ptr<hivemind::dht::Dht> dht,
                            hivemind::dht::Dht::start(options));
  const hivemind::Deadline deadline = hivemind::Deadline::after(wait);
  const std::vector<std::string> uids = {uid};
  while (true) {
    auto found = hivemind::dht::get_experts(
        *dht, uids, hivemind::Deadline::after(hivemind::Milliseconds(5'000)));
    if (found.is_ok() && (*found)[0]) return (*found)[0]->endpoint;
    if (deadline.expired()) {
      return hivemind::timeout_error(
          "no server declared " + uid + " in the DHT within " + std::to_string(wait.count()) +
          " s" +
          (found.is_ok() ? std::string() : " (last lookup: " + found.status().message() + ")"));
    }
    // Polling a remote service until a server has come up, not synchronizing threads.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "trainer: %s\n", logging.to_string().c_str());
    return 2;
  }
  std::string server, uid = "expert.0", swarm_key_file;
  int64_t hidden = 64, steps = 30, batch = 64, wait_s = 60;
  hivemind::InitialPeersOptions peer_options;
  if (auto peers = env("HIVEMIND_INITIAL_PEERS"))
    peer_options.initial_peers = hivemind::split_list(*peers);
  if (auto file = env("HIVEMIND_BOOTSTRAP_FILE")) peer_options.bootstrap_file = *file;
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("%s\n", hivemind::version_line("hivemind-example-trainer").c_str());
    return 0;
  }
  bool flag_peers = false, flag_bootstrap = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--server") {
      server = value;
    } else if (flag == "--initial_peers" || flag == "--initial-peers") {
      if (!flag_peers) peer_options.initial_peers.clear();  // the flag replaces the environment
      flag_peers = true;
      for (std::string& peer : hivemind::split_list(value))
        peer_options.initial_peers.push_back(std::move(peer));
    } else if (flag == "--bootstrap_file" || flag == "--bootstrap-file") {
      peer_options.bootstrap_file = value;
      flag_bootstrap = true;
    } else if (flag == "--wait") {
      wait_s = std::atoll(value.c_str());
    } else if (flag == "--uid") {
      uid = value;
    } else if (flag == "--hidden") {
      hidden = std::atoll(value.c_str());
    } else if (flag == "--steps") {
      steps = std::atoll(value.c_str());
    } else if (flag == "--batch") {
      batch = std::atoll(value.c_str());
    } else if (flag == "--swarm_key_file" || flag == "--swarm-key-file") {
      swarm_key_file = value;
    } else {
      return usage();
    }
  }
  // --server, or the swarm: as flags, one or the other; the variables only when --server is absent.
  if (!server.empty() && (flag_peers || flag_bootstrap)) return usage();
  if (!server.empty()) peer_options = {};
  const bool from_dht = !peer_options.initial_peers.empty() || !peer_options.bootstrap_file.empty();
  if ((server.empty() && !from_dht) || hidden < 1 || steps < 2 || batch < 1 || wait_s < 1 ||
      argc % 2 == 0)
    return usage();
  peer_options.bootstrap_timeout = std::chrono::seconds(wait_s);
  // Before the transport starts: every Context of the process reads the key from there.
  if (hivemind::Status key = hivemind::transport::adopt_swarm_key_file(swarm_key_file);
      !key.is_ok()) {
    std::fprintf(stderr, "trainer: %s\n", key.to_string().c_str());
    return 2;
  }

  try {
    // One transport worker (its I/O thread) and RPC client per process, shared by every remote
    // expert.
    auto context = hivemind::transport::Context::create(
                       hivemind::transport::ContextOptions::from_env().value_or_throw())
                       .value_or_throw();
    auto worker = hivemind::transport::Worker::create(context, "trainer-io").value_or_throw();
    auto rpc = hivemind::transport::rpc::Client::create(worker);
    auto caller = hivemind::client::RpcExpertCaller::create(rpc);
    if (server.empty()) {
      auto found = find_expert_server(uid, peer_options, std::chrono::seconds(wait_s), worker, rpc);
      if (!found.is_ok()) {
        std::fprintf(stderr, "trainer: cannot find %s in the swarm: %s\n", uid.c_str(),
                     found.status().to_string().c_str());
        return 1;
      }
      server = *found;
      std::printf("trainer: %s is served at %s\n", uid.c_str(), server.c_str());
    }
    auto info =
        caller->info({uid, server}, hivemind::Deadline::after(hivemind::Milliseconds(30'000)));
    if (!info.is_ok()) {
      std::fprintf(stderr, "trainer: cannot reach %s at %s: %s\n", uid.c_str(), server.c_str(),
                   info.status().to_string().c_str());
      return 1;
    }

    torch::manual_seed(0);
    const int64_t features = 16;
    Model model(
        features, hidden,
        hivemind::client::RemoteExpert(hivemind::client::ExpertAddress{uid, server}, caller));
    torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(1e-2));
    // A fixed regression batch: y = a smooth function of x the model has to fit.
    torch::Tensor x = torch::randn({batch, features});
    torch::Tensor y = torch::sin(x.sum(1, /*keepdim=*/true));

    double first = 0, last = 0;
    for (int64_t step = 0; step < steps; ++step) {
      optimizer.zero_grad();
      torch::Tensor loss = torch::mse_loss(model.forward(x), y);
      loss.backward();  // the expert's gradient comes back from its server, which also updates it
      optimizer.step();
      last = loss.item<double>();
      if (step == 0) first = last;
      if (!std::isfinite(last)) {
        std::fprintf(stderr, "trainer: step %lld: non-finite loss\n", static_cast<long long>(step));
        return 1;
      }
      std::printf("step %lld loss %.5f\n", static_cast<long long>(step), last);
    }
    std::printf("trainer: %lld steps through %s at %s, loss %.5f -> %.5f\n",
                static_cast<long long>(steps), uid.c_str(), server.c_str(), first, last);
    if (!(last < first)) {
      std::fprintf(stderr, "trainer: the loss did not go down\n");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {  // RemoteExpert failures name the expert and the reason
    std::fprintf(stderr, "trainer: %s\n", e.what());
    return 1;
  }
}
