// A minimal trainer that links hivemind directly: a LibTorch model whose middle layer is an expert
// hosted by a hivemind-server, trained end to end (the local layers by a local Adam, the remote
// expert by its server's optimizer, one step per backward call).
//
//   hivemind_trainer_example --server tcp://127.0.0.1:24510 [--uid expert.0] [--hidden 64] [--steps
//   30]
//
// The server must host `uid` with `--hidden_dim` equal to --hidden, e.g.
//   hivemind-server --expert_uids expert.0 --hidden_dim 64 --host 127.0.0.1 --port 24510
// Exits 0 when every step ran and the loss went down on the fixed training batch.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/client/remote_expert.h>
#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/common/logging.h>
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
               "usage: hivemind_trainer_example --server ADDRESS [--uid expert.0] [--hidden 64] "
               "[--steps 30] [--batch 64] [--swarm_key_file FILE]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "trainer: %s\n", logging.to_string().c_str());
    return 2;
  }
  std::string server, uid = "expert.0", swarm_key_file;
  int64_t hidden = 64, steps = 30, batch = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--server")
      server = value;
    else if (flag == "--uid")
      uid = value;
    else if (flag == "--hidden")
      hidden = std::atoll(value.c_str());
    else if (flag == "--steps")
      steps = std::atoll(value.c_str());
    else if (flag == "--batch")
      batch = std::atoll(value.c_str());
    else if (flag == "--swarm_key_file" || flag == "--swarm-key-file")
      swarm_key_file = value;
    else
      return usage();
  }
  if (hivemind::Status key = hivemind::transport::adopt_swarm_key_file(swarm_key_file);
      !key.is_ok()) {
    std::fprintf(stderr, "trainer: %s\n", key.to_string().c_str());
    return 2;
  }
  if (server.empty() || hidden < 1 || steps < 2 || batch < 1 || argc % 2 == 0) return usage();

  try {
    // One transport worker (its I/O thread) and RPC client per process, shared by every remote
    // expert.
    auto context = hivemind::transport::Context::create(
                       hivemind::transport::ContextOptions::from_env().value_or_throw())
                       .value_or_throw();
    auto worker = hivemind::transport::Worker::create(context, "trainer-io").value_or_throw();
    auto caller =
        hivemind::client::RpcExpertCaller::create(hivemind::transport::rpc::Client::create(worker));
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
