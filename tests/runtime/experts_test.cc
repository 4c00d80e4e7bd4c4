// The expert zoo: sizes, determinism, row independence (what batching relies on).
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/runtime/experts.h>

namespace hivemind::runtime {
namespace {

std::vector<torch::Tensor> params_of(const ExpertModule& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters())
    out.push_back(p.detach().clone());
  return out;
}

TEST(ExpertsTest, ParameterCountsMatchTheBlocks) {
  const int64_t h = 16;
  EXPECT_EQ(count_parameters(*make_expert("ffn", h, "e.0", 1).value()), 8 * h * h + 7 * h);
  EXPECT_EQ(count_parameters(*make_expert("ffn_v08", h, "e.0", 1).value()), 24 * h * h + 25 * h);
  EXPECT_EQ(count_parameters(*make_expert("nop", h, "e.0", 1).value()), 0);
  // Encoder layer: attention 4h^2 + 4h, feed-forward 8h^2 + 5h, two norms 4h.
  EXPECT_EQ(count_parameters(*make_expert("transformer", h, "e.0", 1).value()),
            12 * h * h + 13 * h);
}

TEST(ExpertsTest, SameSeedAndUidGiveIdenticalWeightsOthersDiffer) {
  for (std::string cls : {"ffn", "ffn_v08", "transformer"}) {
    auto a = params_of(*make_expert(cls, 16, "expert.1.2", 42).value());
    auto b = params_of(*make_expert(cls, 16, "expert.1.2", 42).value());
    auto other_uid = params_of(*make_expert(cls, 16, "expert.1.3", 42).value());
    auto other_seed = params_of(*make_expert(cls, 16, "expert.1.2", 43).value());
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(torch::equal(a[i], b[i])) << cls << " param " << i;
    bool uid_differs = false;
    bool seed_differs = false;
    for (size_t i = 0; i < a.size(); ++i) {
      uid_differs |= !torch::equal(a[i], other_uid[i]);
      seed_differs |= !torch::equal(a[i], other_seed[i]);
    }
    EXPECT_TRUE(uid_differs) << cls;
    EXPECT_TRUE(seed_differs) << cls;
  }
  // The global generator plays no part.
  torch::manual_seed(1);
  auto x = params_of(*make_expert("ffn", 8, "u", 5).value());
  torch::manual_seed(2);
  auto y = params_of(*make_expert("ffn", 8, "u", 5).value());
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_TRUE(torch::equal(x[i], y[i]));
  EXPECT_NE(expert_seed(1, "a"), expert_seed(1, "b"));
  EXPECT_EQ(expert_seed(7, "expert.0.0"), expert_seed(7, "expert.0.0"));
}

TEST(ExpertsTest, OutputsArePerSampleSoBatchingDoesNotChangeThem) {
  torch::NoGradGuard no_grad;
  for (std::string cls : {"ffn", "ffn_v08", "transformer", "nop"}) {
    ExpertConfig config;
    config.cls = cls;
    config.hidden_dim = 32;
    config.seq_len = 5;
    auto expert = make_expert(config, "row.0", 3).value();
    std::vector<int64_t> shape = {6};
    const std::vector<TensorSchema> schema = expert->input_schema();
    for (int64_t d : schema[0].shape)
      shape.push_back(d);
    torch::Tensor batch = torch::randn(shape);
    torch::Tensor together = expert->forward({batch})[0];
    ASSERT_EQ(together.sizes(), batch.sizes()) << cls;
    for (int64_t i = 0; i < 6; ++i) {
      torch::Tensor alone = expert->forward({batch.narrow(0, i, 1)})[0];
      EXPECT_TRUE(torch::allclose(alone, together.narrow(0, i, 1), 1e-5, 1e-5))
          << cls << " row " << i;
    }
  }
}

TEST(ExpertsTest, NopCopiesAndUnknownClassesAreRefused) {
  auto nop = make_expert("nop", 4, "n", 0).value();
  torch::Tensor x = torch::randn({2, 4});
  torch::Tensor y = nop->forward({x})[0];
  EXPECT_TRUE(torch::equal(x, y));
  EXPECT_NE(x.data_ptr(), y.data_ptr());
  auto bad = make_expert("moe_of_moes", 4, "n", 0);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("ffn, ffn_v08, transformer, nop"), std::string::npos);
  EXPECT_FALSE(make_expert("ffn", 0, "n", 0).is_ok());
}

}  // namespace
}  // namespace hivemind::runtime
