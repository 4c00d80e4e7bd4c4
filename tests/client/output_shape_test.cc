// Experts whose output has another shape than their input, or several outputs, called without
// `output_shape`: the layers learn the outputs' shapes from the experts' descriptions (`info`), as
// hivemind's do, once per layer; descriptions that fail or never come do not hold the layer up, and
// where no expert can describe itself the layer assumes one output of the input's shape, as before.
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn.h>
#include <torch/types.h>

#include <hivemind/client/remote_expert.h>
#include <hivemind/client/remote_moe.h>
#include <hivemind/client/switch_moe.h>

#include "fake_swarm.h"
#include "test_env.h"

namespace hivemind::client {
namespace {

using hivemind::testing::expect_throws_with;

constexpr int64_t kIn = 6;
constexpr int64_t kOut = 3;
const std::vector<int64_t> kGrid{5};

using Shapes = std::vector<std::vector<int64_t>>;

protocol::ExpertInfo description(const std::string& uid, const Shapes& outputs = {{kOut}}) {
  protocol::ExpertInfo info;
  info.uid = uid;
  info.expert_cls = "linear";
  info.inputs.push_back({quant::DType::kFloat32, {kIn}});
  for (const std::vector<int64_t>& shape : outputs)
    info.outputs.push_back({quant::DType::kFloat32, shape});
  return info;
}

// Every expert of a one-dimensional grid alive, each a seeded Linear(kIn, kOut) that describes
// itself truthfully.
struct NarrowingSwarm {
  std::map<std::string, torch::nn::Linear> experts;
  std::shared_ptr<testing::FakeDirectory> directory;
  std::shared_ptr<testing::FakeCaller> caller = std::make_shared<testing::FakeCaller>();

  NarrowingSwarm() {
    std::map<std::string, std::string> live;
    for (int64_t i = 0; i < kGrid[0]; ++i) {
      const std::string uid = "expert." + std::to_string(i);
      live[uid] = "fake://0";
      torch::manual_seed(40 + static_cast<uint64_t>(i));
      torch::nn::Linear expert(kIn, kOut);
      experts.emplace(uid, expert);
      caller->add_expert(uid,
                         [expert](const torch::Tensor& x) mutable { return expert->forward(x); });
      caller->describe(uid, description(uid));
    }
    directory = std::make_shared<testing::FakeDirectory>(std::move(live));
  }

  RemoteMixtureOfExpertsOptions options(int64_t k_best) const {
    RemoteMixtureOfExpertsOptions o;
    o.in_features = kIn;
    o.grid_size = kGrid;
    o.uid_prefix = "expert.";
    o.k_best = k_best;
    return o;
  }
};

TEST(LearnedOutputShape, MixtureOfExpertsMatchesTheLocalReferenceAndAsksOnce) {
  NarrowingSwarm swarm;
  RemoteMixtureOfExperts moe(swarm.options(/*k_best=*/3), swarm.directory, swarm.caller);
  EXPECT_FALSE(moe->output_shapes().has_value());
  torch::manual_seed(1);
  const torch::Tensor x0 = torch::randn({7, kIn});
  const torch::Tensor cotangent = torch::randn({7, kOut});

  torch::Tensor x = x0.clone().requires_grad_(true);
  const torch::Tensor out = moe->forward(x);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({7, kOut}));
  (out * cotangent).sum().backward();
  EXPECT_EQ(moe->output_shapes(), Shapes{{kOut}});

  // hivemind's MoE by hand over the routing the layer chose.
  torch::Tensor xr = x0.clone().requires_grad_(true);
  const auto grid = moe->proj->forward(xr).split_with_sizes(kGrid, -1);
  const torch::Tensor want = testing::reference_mixture(
      grid, moe->last_routing().chosen,
      [&](int64_t i, const ChosenExpert& e) -> std::optional<torch::Tensor> {
        return swarm.experts.at(e.expert.uid)->forward(xr.index({i}));
      },
      torch::Tensor());
  (want * cotangent).sum().backward();
  EXPECT_TRUE(torch::allclose(out, want, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(x.grad(), xr.grad(), 1e-4, 1e-5));

  const int asked = swarm.caller->info_calls();
  EXPECT_GE(asked, 1);
  EXPECT_EQ(moe->forward(torch::randn({4, kIn})).sizes(), torch::IntArrayRef({4, kOut}));
  EXPECT_EQ(swarm.caller->info_calls(), asked) << "the shape is learned once per layer";
}

TEST(LearnedOutputShape, ExpertsThatFailOrNeverDescribeThemselvesDoNotHoldTheLayerUp) {
  NarrowingSwarm swarm;
  // Every expert but the last fails its info, the first one never answers it; the forward needs
  // only one description.
  for (int64_t i = 1; i + 1 < kGrid[0]; ++i)
    swarm.caller->set_info("expert." + std::to_string(i), testing::Behavior::kFail);
  swarm.caller->set_info("expert.0", testing::Behavior::kHold);
  RemoteMixtureOfExperts moe(swarm.options(/*k_best=*/5), swarm.directory, swarm.caller);
  const torch::Tensor out = moe->forward(torch::randn({3, kIn}));
  EXPECT_EQ(out.sizes(), torch::IntArrayRef({3, kOut}));
  EXPECT_EQ(moe->output_shapes(), Shapes{{kOut}});
  swarm.caller->release_held();  // the late description lands harmlessly
}

TEST(LearnedOutputShape, WithoutDescriptionsTheInputShapeIsAssumedAndAskedAgain) {
  testing::Swarm swarm = testing::make_swarm("expert.", {4}, kIn, 1.0, 7, /*threads=*/0);
  RemoteMixtureOfExperts moe(testing::moe_options(swarm, kIn, 2), swarm.directory, swarm.caller);
  EXPECT_EQ(moe->forward(torch::randn({3, kIn})).sizes(), torch::IntArrayRef({3, kIn}));
  EXPECT_FALSE(moe->output_shapes().has_value());
  const int asked = swarm.caller->info_calls();
  EXPECT_GE(asked, 1);
  moe->forward(torch::randn({3, kIn}));
  EXPECT_GT(swarm.caller->info_calls(), asked) << "nothing learned: the next forward asks again";
}

// Every expert of `swarm` replaced by one of two outputs: (its Linear(x), tanh(x) * scale), the
// second of the input's shape and its own scale per expert (1 + 0.5 * its index); with
// `residual_first`, the same two the other way round.
void make_two_outputs(NarrowingSwarm& swarm, bool residual_first = false) {
  double scale = 1;
  for (const auto& [uid, expert] : swarm.experts) {
    torch::nn::Linear linear =
        expert;  // a handle of its own: the lambda calls the non-const forward
    swarm.caller->add_multi_output_expert(
        uid, [linear, scale, residual_first](const std::vector<torch::Tensor>& x) mutable {
          std::vector<torch::Tensor> out{linear->forward(x.at(0)), torch::tanh(x.at(0)) * scale};
          if (residual_first) std::swap(out[0], out[1]);
          return out;
        });
    swarm.caller->describe(
        uid, description(uid, residual_first ? Shapes{{kIn}, {kOut}} : Shapes{{kOut}, {kIn}}));
    scale += 0.5;
  }
}

TEST(LearnedOutputShape, MixtureOfExpertsAveragesEveryOutputOfItsExperts) {
  NarrowingSwarm swarm;
  make_two_outputs(swarm);
  RemoteMixtureOfExperts moe(swarm.options(/*k_best=*/3), swarm.directory, swarm.caller);
  torch::manual_seed(3);
  const torch::Tensor x0 = torch::randn({6, kIn});
  const torch::Tensor cot0 = torch::randn({6, kOut}), cot1 = torch::randn({6, kIn});

  torch::Tensor x = x0.clone().requires_grad_(true);
  const std::vector<torch::Tensor> out = moe->forward_outputs({x});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].sizes(), torch::IntArrayRef({6, kOut}));
  EXPECT_EQ(out[1].sizes(), torch::IntArrayRef({6, kIn}));
  ((out[0] * cot0).sum() + (out[1] * cot1).sum()).backward();
  EXPECT_EQ(moe->output_shapes(), (Shapes{{kOut}, {kIn}}));

  torch::Tensor xr = x0.clone().requires_grad_(true);
  const auto grid = moe->proj->forward(xr).split_with_sizes(kGrid, -1);
  const auto chosen = moe->last_routing().chosen;
  std::vector<torch::Tensor> want;
  for (size_t j = 0; j < 2; ++j) {
    want.push_back(testing::reference_mixture(
        grid, chosen,
        [&](int64_t i, const ChosenExpert& e) -> std::optional<torch::Tensor> {
          torch::Tensor row = xr.index({i});
          const double scale = 1 + 0.5 * std::stod(e.expert.uid.substr(7));
          return j == 0 ? swarm.experts.at(e.expert.uid)->forward(row) : torch::tanh(row) * scale;
        },
        torch::Tensor()));
  }
  ((want[0] * cot0).sum() + (want[1] * cot1).sum()).backward();
  EXPECT_TRUE(torch::allclose(out[0], want[0], 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(out[1], want[1], 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(x.grad(), xr.grad(), 1e-4, 1e-5));

  // A loss that uses one output only: the other's gradient is zero, not missing.
  torch::Tensor x2 = x0.clone().requires_grad_(true);
  (moe->forward_outputs({x2})[1] * cot1).sum().backward();
  torch::Tensor xr2 = x0.clone().requires_grad_(true);
  (testing::reference_mixture(
       moe->proj->forward(xr2).split_with_sizes(kGrid, -1), moe->last_routing().chosen,
       [&](int64_t i, const ChosenExpert& e) -> std::optional<torch::Tensor> {
         return torch::tanh(xr2.index({i})) * (1 + 0.5 * std::stod(e.expert.uid.substr(7)));
       },
       torch::Tensor()) *
   cot1)
      .sum()
      .backward();
  EXPECT_TRUE(torch::allclose(x2.grad(), xr2.grad(), 1e-4, 1e-5));

  expect_throws_with([&] { moe->forward(x0); }, "the experts have 2 outputs; call forward_outputs");
}

TEST(LearnedOutputShape, RemoteExpertReturnsEveryOutput) {
  NarrowingSwarm swarm;
  make_two_outputs(swarm);
  RemoteExpert remote(ExpertAddress{"expert.1", "fake://0"}, swarm.caller);
  torch::manual_seed(4);
  const torch::Tensor x0 = torch::randn({4, kIn});
  torch::Tensor x = x0.clone().requires_grad_(true);
  const std::vector<torch::Tensor> out = remote->forward_outputs({x});
  ASSERT_EQ(out.size(), 2u);
  (out[0].sum() + out[1].sum()).backward();
  torch::Tensor xr = x0.clone().requires_grad_(true);
  const torch::Tensor want0 = swarm.experts.at("expert.1")->forward(xr);
  const torch::Tensor want1 = torch::tanh(xr) * 1.5;
  (want0.sum() + want1.sum()).backward();
  EXPECT_TRUE(torch::allclose(out[0], want0, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(out[1], want1, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(x.grad(), xr.grad(), 1e-5, 1e-6));
  expect_throws_with([&] { remote->forward(x0); }, "has 2 outputs; call forward_outputs");
}

TEST(LearnedOutputShape, AConfiguredShapeAsksNothing) {
  NarrowingSwarm swarm;
  RemoteMixtureOfExpertsOptions options = swarm.options(/*k_best=*/2);
  options.output_shape = std::vector<int64_t>{kOut};
  RemoteMixtureOfExperts moe(options, swarm.directory, swarm.caller);
  EXPECT_EQ(moe->forward(torch::randn({4, kIn})).sizes(), torch::IntArrayRef({4, kOut}));
  EXPECT_EQ(swarm.caller->info_calls(), 0);
}

TEST(LearnedOutputShape, RemoteExpertLearnsItsExpertsShape) {
  NarrowingSwarm swarm;
  RemoteExpert remote(ExpertAddress{"expert.2", "fake://0"}, swarm.caller);
  EXPECT_FALSE(remote->output_shapes().has_value());
  torch::manual_seed(2);
  const torch::Tensor x0 = torch::randn({5, kIn});
  torch::Tensor x = x0.clone().requires_grad_(true);
  const torch::Tensor out = remote->forward(x);
  out.sum().backward();
  torch::Tensor xr = x0.clone().requires_grad_(true);
  const torch::Tensor want = swarm.experts.at("expert.2")->forward(xr);
  want.sum().backward();
  EXPECT_TRUE(torch::allclose(out, want, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(x.grad(), xr.grad(), 1e-5, 1e-6));
  EXPECT_EQ(remote->output_shapes(), Shapes{{kOut}});
  EXPECT_EQ(swarm.caller->info_calls(), 1);
}

TEST(LearnedOutputShape, SwitchLayerWithoutDescriptionsKeepsTheInputShapeForItsResidual) {
  testing::Swarm swarm = testing::make_swarm("sw.", {4}, kIn, 1.0, 8, /*threads=*/0);
  RemoteMixtureOfExpertsOptions base = testing::moe_options(swarm, kIn, 1);
  RemoteSwitchMixtureOfExperts moe(RemoteSwitchMixtureOfExpertsOptions::switch_defaults(base),
                                   swarm.directory, swarm.caller);
  EXPECT_EQ(moe->forward(torch::randn({3, kIn})).first.sizes(), torch::IntArrayRef({3, kIn}));
  EXPECT_FALSE(moe->output_shapes().has_value());
}

TEST(LearnedOutputShape, SwitchLayerAveragesEveryOutputAndAddsTheInputToTheFirst) {
  NarrowingSwarm swarm;
  make_two_outputs(swarm, /*residual_first=*/true);
  RemoteSwitchMixtureOfExperts moe(
      RemoteSwitchMixtureOfExpertsOptions::switch_defaults(swarm.options(/*k_best=*/1)),
      swarm.directory, swarm.caller);
  moe->eval();  // no jitter: the reference gates on x itself
  torch::manual_seed(4);
  const torch::Tensor x0 = torch::randn({5, kIn});
  const torch::Tensor cot0 = torch::randn({5, kIn}), cot1 = torch::randn({5, kOut});

  torch::Tensor x = x0.clone().requires_grad_(true);
  const auto [out, loss] = moe->forward_outputs({x});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].sizes(), torch::IntArrayRef({5, kIn}));
  EXPECT_EQ(out[1].sizes(), torch::IntArrayRef({5, kOut}));
  EXPECT_EQ(moe->output_shapes(), (Shapes{{kIn}, {kOut}}));
  ((out[0] * cot0).sum() + (out[1] * cot1).sum()).backward();

  // hivemind's switch by hand, one grid dimension: each sample's one expert weighted by its
  // softmax probability, the input added to the first output.
  torch::Tensor xr = x0.clone().requires_grad_(true);
  const torch::Tensor probs = torch::softmax(moe->proj->forward(xr), -1);
  std::vector<torch::Tensor> rows0, rows1;
  for (int64_t i = 0; i < 5; ++i) {
    const std::string& uid = moe->last_routing().chosen.at(static_cast<size_t>(i)).at(0).expert.uid;
    const int64_t index = std::stoll(uid.substr(7));
    const torch::Tensor p = probs[i][index];
    const torch::Tensor row = xr.index({i});
    rows0.push_back(p * torch::tanh(row) * (1 + 0.5 * static_cast<double>(index)) + row);
    rows1.push_back(p * swarm.experts.at(uid)->forward(row));
  }
  const torch::Tensor want0 = torch::stack(rows0), want1 = torch::stack(rows1);
  ((want0 * cot0).sum() + (want1 * cot1).sum()).backward();
  EXPECT_TRUE(torch::allclose(out[0], want0, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(out[1], want1, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(x.grad(), xr.grad(), 1e-4, 1e-5));

  expect_throws_with([&] { moe->forward(x0); }, "the experts have 2 outputs; call forward_outputs");
}

TEST(LearnedOutputShape, SwitchLayerRefusesAFirstOutputTheInputCannotBeAddedTo) {
  NarrowingSwarm swarm;
  make_two_outputs(swarm);  // the first output is [kOut]
  RemoteSwitchMixtureOfExperts moe(
      RemoteSwitchMixtureOfExpertsOptions::switch_defaults(swarm.options(/*k_best=*/1)),
      swarm.directory, swarm.caller);
  expect_throws_with(
      [&] {
        moe->forward_outputs({torch::randn({2, kIn})});
      },
      "RemoteSwitchMixtureOfExperts: the residual connection adds the input to the "
      "experts' first output, whose per-sample shape is [3], not the input's [6]");
}

}  // namespace
}  // namespace hivemind::client
