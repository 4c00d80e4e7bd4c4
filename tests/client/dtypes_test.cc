// Experts whose inputs and outputs are not all float32, through RemoteExpert and both MoE layers:
// ids and masks reach the experts and get no gradient, integer outputs come back in their own
// dtype and without a gradient, floating outputs in the dtype of the trainer's floating input, and
// the mixtures refuse what they cannot average or gate, naming it.
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn.h>
#include <torch/types.h>

#include <hivemind/client/expert_caller.h>
#include <hivemind/client/remote_expert.h>
#include <hivemind/client/remote_moe.h>
#include <hivemind/client/switch_moe.h>

#include "fake_swarm.h"
#include "test_env.h"

namespace hivemind::client {
namespace {

using hivemind::testing::expect_throws_with;

constexpr int64_t kVocab = 10;
constexpr int64_t kHidden = 4;
constexpr int64_t kTokens = 3;

// (ids [., kTokens] int64, x [., kHidden], keep [.] bool) ->
//   (y = sum of the ids' embeddings + x * keep    [., kHidden] float32,
//    y as bfloat16                                [., kHidden],
//    ids * 2                                      [., kTokens] int64)
struct TokenExpert {
  torch::Tensor table;

  explicit TokenExpert(uint64_t seed) {
    torch::manual_seed(seed);
    table = torch::randn({kVocab, kHidden});
  }
  std::vector<torch::Tensor> operator()(const std::vector<torch::Tensor>& in) const {
    const torch::Tensor y = torch::embedding(table, in.at(0)).sum(1) +
                            in.at(1) * in.at(2).unsqueeze(1).to(in.at(1).scalar_type());
    return {y, y.to(torch::kBFloat16), in.at(0) * 2};
  }

  static protocol::ExpertInfo description(const std::string& uid) {
    protocol::ExpertInfo info;
    info.uid = uid;
    info.expert_cls = "tokens";
    info.inputs = {{quant::DType::kInt64, {kTokens}},
                   {quant::DType::kFloat32, {kHidden}},
                   {quant::DType::kBool, {}}};
    info.outputs = {{quant::DType::kFloat32, {kHidden}},
                    {quant::DType::kBFloat16, {kHidden}},
                    {quant::DType::kInt64, {kTokens}}};
    return info;
  }
};

std::shared_ptr<testing::FakeCaller> caller_serving(const TokenExpert& expert) {
  auto caller = std::make_shared<testing::FakeCaller>();
  caller->add_multi_output_expert("tokens.0", expert);
  caller->describe("tokens.0", TokenExpert::description("tokens.0"));
  return caller;
}

TEST(ExpertDtypes, AnswerDtypeFollowsTheTrainersFloatingInput) {
  const torch::Tensor ids = torch::zeros({2, 3}, torch::kInt64);
  const torch::Tensor half = torch::zeros({2, 3}, torch::kBFloat16);
  const torch::Tensor full = torch::zeros({2, 3});
  EXPECT_EQ(answer_dtype(quant::DType::kFloat32, {ids, half, full}), torch::kBFloat16);
  EXPECT_EQ(answer_dtype(quant::DType::kBFloat16, {full}), torch::kFloat32);
  EXPECT_EQ(answer_dtype(quant::DType::kInt64, {full}), torch::kInt64);
  EXPECT_EQ(answer_dtype(quant::DType::kBool, {half}), torch::kBool);
  // No floating input: the declared dtype.
  EXPECT_EQ(answer_dtype(quant::DType::kFloat16, {ids}), torch::kFloat16);
}

TEST(ExpertDtypes, RemoteExpertOfIdsAndAMaskTrainsWithoutGradientsForThem) {
  TokenExpert local(3);
  auto caller = caller_serving(local);
  RemoteExpert remote(ExpertAddress{"tokens.0", "fake://0"}, caller);
  const torch::Tensor ids = torch::tensor({1, 4, 4, 9, 0, 2}, torch::kInt64).view({2, kTokens});
  const torch::Tensor keep = torch::tensor({true, false});
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({2, kHidden}).requires_grad_(true);

  std::vector<torch::Tensor> out = remote->forward_outputs({ids, x, keep});
  ASSERT_EQ(out.size(), 3u);
  const std::vector<torch::Tensor> want = local({ids, x.detach(), keep});
  EXPECT_EQ(out[0].scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(out[0], want[0]));
  // Declared bfloat16, received in the trainer's float32.
  EXPECT_EQ(out[1].scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(out[1], want[1].to(torch::kFloat32)));
  EXPECT_EQ(out[2].scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(out[2], ids * 2));
  EXPECT_TRUE(out[0].requires_grad());
  EXPECT_FALSE(out[2].requires_grad());

  // dy/dx = keep, through both floating outputs.
  (out[0].sum() + out[1].sum()).backward();
  const torch::Tensor expected = 2 * keep.unsqueeze(1).to(torch::kFloat32).expand({2, kHidden});
  EXPECT_TRUE(torch::allclose(x.grad(), expected)) << x.grad();
  EXPECT_FALSE(ids.grad().defined());
  EXPECT_EQ(caller->calls().size(), 2u) << "one forward and one backward request";
}

TEST(ExpertDtypes, ABfloat16TrainerGetsBfloat16Answers) {
  TokenExpert local(4);
  auto caller = caller_serving(local);
  RemoteExpert remote(ExpertAddress{"tokens.0", "fake://0"}, caller);
  const torch::Tensor ids = torch::zeros({3, kTokens}, torch::kInt64);
  const torch::Tensor x = torch::ones({3, kHidden}, torch::kBFloat16).requires_grad_(true);
  std::vector<torch::Tensor> out =
      remote->forward_outputs({ids, x, torch::ones({3}, torch::kBool)});
  EXPECT_EQ(out[0].scalar_type(), torch::kBFloat16);
  EXPECT_EQ(out[1].scalar_type(), torch::kBFloat16);
  EXPECT_EQ(out[2].scalar_type(), torch::kInt64);
  out[0].sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(x.grad(), torch::ones({3, kHidden}, torch::kBFloat16)));
}

TEST(ExpertDtypes, AnAnswerOfTheWrongKindIsTheExpertsFailureNotACast) {
  // No description (the layer is given the output's shape): a floating output is expected, and an
  // expert that answers integers fails, named, instead of being cast.
  auto caller = std::make_shared<testing::FakeCaller>();
  caller->add_multi_output_expert("ints.0", [](const std::vector<torch::Tensor>& in) {
    return std::vector<torch::Tensor>{in.at(0).to(torch::kInt64)};
  });
  RemoteExpertOptions options;
  options.output_shape = std::vector<int64_t>{kHidden};
  RemoteExpert remote(ExpertAddress{"ints.0", "fake://0"}, caller, options);
  expect_throws_with(
      [&] {
        remote->forward(torch::randn({2, kHidden}));
      },
      "returned output of dtype Long, expected a floating one");
}

// A one-dimensional grid of experts y = x * (1 + mask), mask [., 1] bool: the mixture's second
// input.
struct MaskSwarm {
  std::shared_ptr<testing::FakeDirectory> directory;
  std::shared_ptr<testing::FakeCaller> caller = std::make_shared<testing::FakeCaller>();

  explicit MaskSwarm(quant::DType output_dtype = quant::DType::kFloat32) {
    std::map<std::string, std::string> live;
    for (int i = 0; i < 3; ++i) {
      const std::string uid = "mask." + std::to_string(i);
      live[uid] = "fake://0";
      caller->add_multi_output_expert(
          uid, [output_dtype](const std::vector<torch::Tensor>& in) -> std::vector<torch::Tensor> {
            const torch::Tensor y = in.at(0) * (1 + in.at(1).to(in.at(0).scalar_type()));
            return {y.to(quant::dtype_to_torch(output_dtype))};
          });
      protocol::ExpertInfo info;
      info.uid = uid;
      info.inputs = {{quant::DType::kFloat32, {kHidden}}, {quant::DType::kBool, {1}}};
      info.outputs = {{output_dtype, {kHidden}}};
      caller->describe(uid, info);
    }
    directory = std::make_shared<testing::FakeDirectory>(std::move(live));
  }

  RemoteMixtureOfExpertsOptions options() const {
    RemoteMixtureOfExpertsOptions o;
    o.in_features = kHidden;
    o.grid_size = {3};
    o.uid_prefix = "mask.";
    o.k_best = 2;
    return o;
  }
};

TEST(ExpertDtypes, AMixtureTakesAMaskAfterItsFloatingInput) {
  MaskSwarm swarm;
  RemoteMixtureOfExperts moe(swarm.options(), swarm.directory, swarm.caller);
  torch::manual_seed(6);
  const torch::Tensor x = torch::randn({4, kHidden}).requires_grad_(true);
  const torch::Tensor mask = torch::tensor({true, false, true, false}).view({4, 1});
  const torch::Tensor y = moe->forward_all({x, mask});
  // Every expert computes the same function and the weights sum to one: y = x * (1 + mask).
  const torch::Tensor want = x.detach() * (1 + mask.to(torch::kFloat32));
  EXPECT_TRUE(torch::allclose(y, want, 1e-5, 1e-6)) << y << want;
  y.sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(
      torch::allclose(x.grad(), (1 + mask.to(torch::kFloat32)).expand({4, kHidden}), 1e-5, 1e-6));
  EXPECT_FALSE(mask.grad().defined());
}

TEST(ExpertDtypes, MixturesRefuseIdsToGateAndOutputsTheyCannotAverage) {
  MaskSwarm swarm;
  RemoteMixtureOfExperts moe(swarm.options(), swarm.directory, swarm.caller);
  const torch::Tensor ids = torch::zeros({2, kHidden}, torch::kInt64);
  expect_throws_with(
      [&] {
        moe->forward_all({ids, torch::zeros({2, 1}, torch::kBool)});
      },
      "RemoteMixtureOfExperts: the first input is Long; the gating function "
      "scores it, so it must be floating");

  MaskSwarm counting(quant::DType::kInt64);
  const torch::Tensor x = torch::randn({2, kHidden});
  const torch::Tensor mask = torch::zeros({2, 1}, torch::kBool);
  RemoteMixtureOfExperts mixture(counting.options(), counting.directory, counting.caller);
  expect_throws_with(
      [&] {
        mixture->forward_all({x, mask});
      },
      "RemoteMixtureOfExperts: the experts' output 0 is Long; a mixture averages");
  RemoteSwitchMixtureOfExperts switch_moe(
      RemoteSwitchMixtureOfExpertsOptions::switch_defaults(counting.options()), counting.directory,
      counting.caller);
  expect_throws_with(
      [&] {
        switch_moe->forward_all({x, mask});
      },
      "RemoteSwitchMixtureOfExperts: the experts' output 0 is Long");
}

}  // namespace
}  // namespace hivemind::client
