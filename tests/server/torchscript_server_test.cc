// TorchScript experts served over the network by Server::create: the same forward and input
// gradients as the module rebuilt in process by make_expert (a Python-written module and one
// scripted from C++), training through the server, checkpoint and restart, --reinit determinism,
// and a bad file refused at start.
#include <cstdlib>

#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/runtime/torchscript_expert.h>
#include <hivemind/server/server.h>

#include "server_test_util.h"
#include "torchscript_files.h"

namespace hivemind::server {
namespace {

using namespace std::chrono_literals;
using test_experts::TestTempDir;
using testing::RawClient;

constexpr int64_t kHidden = 8;
constexpr uint64_t kSeed = 21;
constexpr double kLr = 0.05;

ServerOptions torchscript_server(const std::filesystem::path& file, std::vector<std::string> uids) {
  ::setenv("HIVEMIND_SPIN_US", "0", 1);  // the shared 2-core machine: no busy polling in tests
  ServerOptions o;
  o.expert_cls = runtime::kTorchScriptExpertClass;
  o.module_path = file.string();
  o.expert_uids = std::move(uids);
  o.seed = kSeed;
  o.host = "127.0.0.1";
  o.port = 0;
  o.transport = "tcp";
  o.compression = "none";
  o.optimizer = "sgd";
  o.lr = kLr;
  o.max_batch_size = 64;
  o.cpu_bind = "none";
  o.stats_report_interval = 0;
  o.update_period = 60;
  o.grace_period = 20;
  o.declare = [](std::span<const std::string>, const std::string&, DhtTime, Deadline) {
    return Status::ok();
  };
  return o;
}

std::unique_ptr<Server> start(const ServerOptions& o) {
  Status valid = validate(o);
  EXPECT_TRUE(valid.is_ok()) << valid.to_string();
  auto server = Server::create(o);
  if (!server.is_ok()) {
    ADD_FAILURE() << server.status().to_string();
    return nullptr;
  }
  Status started = (*server)->start();
  EXPECT_TRUE(started.is_ok()) << started.to_string();
  return std::move(server).value();
}

// The trainer-side rebuild of a served expert: the same file and options through make_expert.
std::shared_ptr<runtime::ExpertModule> rebuild(const ServerOptions& o, const std::string& uid) {
  auto made = runtime::make_expert(expert_config(o), uid, o.seed);
  EXPECT_TRUE(made.is_ok()) << made.status().to_string();
  return made.is_ok() ? *made : nullptr;
}

// Info, one forward and one backward of `uid` over the network against the in-process rebuild
// (within 1e-5), then the server's SGD step against the same step taken here.
void expect_served_like_the_rebuild(Server& server, const ServerOptions& o,
                                    const std::string& uid) {
  RawClient client;
  auto info_reply = client.call(server.address(), protocol::kInfoMethod, uid);
  ASSERT_TRUE(info_reply.is_ok()) << info_reply.status().to_string();
  auto info = protocol::decode_expert_info(info_reply->metadata).value();
  EXPECT_EQ(info.expert_cls, runtime::kTorchScriptExpertClass);
  ASSERT_EQ(info.inputs.size(), 1u);
  EXPECT_EQ(info.inputs[0].shape, std::vector<int64_t>{kHidden});
  ASSERT_EQ(info.outputs.size(), 1u);
  EXPECT_EQ(info.outputs[0].shape, std::vector<int64_t>{kHidden});

  auto reference = rebuild(o, uid);
  ASSERT_TRUE(reference);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  torch::Tensor x = torch::randn({3, kHidden}, gen);
  auto y = client.tensors(server.address(), protocol::kForwardMethod, uid, {x});
  ASSERT_TRUE(y.is_ok()) << y.status().to_string();
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose((*y)[0], reference->forward({x})[0], 1e-5, 1e-5));
  }
  torch::Tensor g = torch::randn({3, kHidden}, gen);
  auto gx = client.tensors(server.address(), protocol::kBackwardMethod, uid, {x, g});
  ASSERT_TRUE(gx.is_ok()) << gx.status().to_string();
  torch::Tensor xr = x.clone().requires_grad_(true);
  reference->forward({xr})[0].backward(g);
  EXPECT_TRUE(torch::allclose((*gx)[0], xr.grad(), 1e-5, 1e-5));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : reference->parameters())
      p -= kLr * p.grad();
  }
  auto served = server.backend(uid)->parameters();
  auto local = reference->parameters();
  ASSERT_EQ(served.size(), local.size());
  for (size_t i = 0; i < local.size(); ++i)
    EXPECT_TRUE(torch::allclose(served[i], local[i], 1e-5, 1e-5)) << i;
}

TEST(TorchScriptServerTest, APythonWrittenExpertIsServedLikeItsInProcessRebuild) {
  if (const std::string why = test_experts::python_torch_unavailable(); !why.empty())
    GTEST_SKIP() << "no Python module can be written: " << why;
  TestTempDir dir;
  const auto file = dir / "expert.pt";
  ASSERT_EQ(test_experts::write_python_expert(file, kHidden), "");
  const ServerOptions o = torchscript_server(file, {"py.0", "py.1"});
  auto server = start(o);
  ASSERT_TRUE(server);
  expect_served_like_the_rebuild(*server, o, "py.1");
  EXPECT_EQ(server->backend("py.0")->update_count(), 0);
}

TEST(TorchScriptServerTest, ACppScriptedExpertIsServedLikeItsInProcessRebuild) {
  TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(runtime::save_scripted_ffn(file, kHidden, 9).is_ok());
  ServerOptions o = torchscript_server(file, {"cpp.0"});
  o.reinit = true;  // the rebuild from (seed, uid) must match too
  auto server = start(o);
  ASSERT_TRUE(server);
  expect_served_like_the_rebuild(*server, o, "cpp.0");
}

TEST(TorchScriptServerTest, ItTrainsThroughTheServer) {
  TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(runtime::save_scripted_ffn(file, kHidden, 9).is_ok());
  auto server = start(torchscript_server(file, {"t.0"}));
  ASSERT_TRUE(server);
  RawClient client;
  // A fixed regression task: map a fixed batch to fixed targets, loss = mean squared error, its
  // gradient sent as the backward's output gradient.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  const torch::Tensor x = torch::randn({16, kHidden}, gen);
  const torch::Tensor target = torch::randn({16, kHidden}, gen);
  auto loss_now = [&]() -> double {
    auto y = client.tensors(server->address(), protocol::kForwardMethod, "t.0", {x});
    EXPECT_TRUE(y.is_ok()) << y.status().to_string();
    return y.is_ok() ? ((*y)[0] - target).pow(2).mean().item<double>() : 0.0;
  };
  const double before = loss_now();
  for (int step = 0; step < 30; ++step) {
    auto y = client.tensors(server->address(), protocol::kForwardMethod, "t.0", {x});
    ASSERT_TRUE(y.is_ok()) << y.status().to_string();
    const torch::Tensor grad = 2.0 * ((*y)[0] - target) / static_cast<double>(target.numel());
    auto gx = client.tensors(server->address(), protocol::kBackwardMethod, "t.0", {x, grad});
    ASSERT_TRUE(gx.is_ok()) << gx.status().to_string();
  }
  const double after = loss_now();
  EXPECT_EQ(server->backend("t.0")->update_count(), 30);
  EXPECT_LT(after, 0.9 * before) << "loss " << before << " -> " << after;
}

TEST(TorchScriptServerTest, CheckpointThenRestartRestoresTheTrainedWeights) {
  TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(runtime::save_scripted_ffn(file, kHidden, 9).is_ok());
  ServerOptions o = torchscript_server(file, {"c.0"});
  o.checkpoint_dir = (dir / "checkpoints").string();
  std::vector<torch::Tensor> trained;
  {
    auto server = start(o);
    ASSERT_TRUE(server);
    RawClient client;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
    auto r = client.tensors(server->address(), protocol::kBackwardMethod, "c.0",
                            {torch::randn({4, kHidden}, gen), torch::randn({4, kHidden}, gen)});
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    trained = server->backend("c.0")->parameters();
    ASSERT_TRUE(server->shutdown(20s).is_ok());  // drains and writes the final checkpoint
  }
  auto resumed = Server::create(o);
  ASSERT_TRUE(resumed.is_ok()) << resumed.status().to_string();
  EXPECT_EQ((*resumed)->backend("c.0")->update_count(), 1);
  auto params = (*resumed)->backend("c.0")->parameters();
  ASSERT_EQ(params.size(), trained.size());
  auto initial = rebuild(o, "c.0")->parameters();
  bool any_moved = false;
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::equal(params[i], trained[i])) << i;
    any_moved = any_moved || !torch::equal(params[i], initial[i]);
  }
  EXPECT_TRUE(any_moved) << "the restored weights are the file's: the step was not checkpointed";
}

TEST(TorchScriptServerTest, ReinitWeightsAreTheSeedsPerUidOnTheServerAndTheTrainer) {
  TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(runtime::save_scripted_ffn(file, kHidden, 9).is_ok());
  ServerOptions o = torchscript_server(file, {"r.0", "r.1"});
  o.reinit = true;
  auto server = Server::create(o);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  auto r0 = (*server)->backend("r.0")->parameters();
  auto r1 = (*server)->backend("r.1")->parameters();
  auto trainer_r0 = rebuild(o, "r.0")->parameters();
  ServerOptions from_file = o;
  from_file.reinit = false;
  auto file_weights = rebuild(from_file, "r.0")->parameters();
  ASSERT_EQ(r0.size(), trainer_r0.size());
  for (size_t i = 0; i < r0.size(); ++i)
    EXPECT_TRUE(torch::equal(r0[i], trainer_r0[i])) << i;  // same seed and uid: bit-identical
  EXPECT_FALSE(torch::equal(r0[0], r1[0]));                // another uid: other weights
  EXPECT_FALSE(torch::equal(r0[0], file_weights[0]));      // not the file's
}

TEST(TorchScriptServerTest, ABadFileIsRefusedAtStartNamingTheFile) {
  TestTempDir dir;
  const auto file = dir / "mismatch.pt";
  auto module = test_experts::scripted_module(R"(
def forward(self, x):
    return torch.matmul(x, self.w)
)",
                                              kHidden);
  ASSERT_TRUE(runtime::save_torchscript_expert(module, file, {{.shape = {kHidden + 3}}}).is_ok());
  auto refused = Server::create(torchscript_server(file, {"bad.0"}));
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find(file.string()), std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("float32[2, 11]"), std::string::npos)
      << refused.status().message();
}

}  // namespace
}  // namespace hivemind::server
