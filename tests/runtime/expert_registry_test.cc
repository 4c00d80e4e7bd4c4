// The expert registry: the zoo registered through it, classes a C++ program adds (built by
// make_expert with seed-determined weights), and the names and factories it refuses.
// Registrations are per process and permanent, so each test registers names of its own.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <utility>

#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/runtime/expert_registry.h>
#include <hivemind/runtime/experts.h>

#include "scaled_linear_expert.h"

namespace hivemind::runtime {
namespace {

using test_experts::kScaledLinearClass;
using test_experts::ScaledLinear;

std::vector<torch::Tensor> params_of(const ExpertModule& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters())
    out.push_back(p.detach().clone());
  return out;
}

bool all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TensorSchema float_schema(std::vector<int64_t> shape) {
  TensorSchema s;
  s.shape = std::move(shape);
  return s;
}

// Returns its inputs; its schema is whatever the test gives.
class Identity final : public ExpertModule {
 public:
  Identity(std::string cls, std::vector<TensorSchema> schema)
      : ExpertModule(std::move(cls)), schema_(std::move(schema)) {}
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override { return in; }
  std::vector<TensorSchema> input_schema() const override { return schema_; }
  std::vector<TensorSchema> output_schema() const override { return schema_; }

 private:
  std::vector<TensorSchema> schema_;
};

ExpertFactory scaled_linear_named(std::string cls) {
  return [cls](const ExpertConfig& c) -> std::shared_ptr<ExpertModule> {
    return std::make_shared<ScaledLinear>(cls, c.hidden_dim, 1.0);
  };
}

TEST(ExpertRegistryTest, TheZooIsRegisteredFirst) {
  const std::vector<std::string> classes = expert_classes();
  ASSERT_GE(classes.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(classes.begin(), classes.begin() + 4),
            (std::vector<std::string>{"ffn", "ffn_v08", "transformer", "nop"}));
  for (const char* cls : {"ffn", "ffn_v08", "transformer", "nop"})
    EXPECT_TRUE(is_expert_class(cls)) << cls;
  EXPECT_FALSE(is_expert_class("moe_of_moes"));
  EXPECT_FALSE(is_expert_class(""));
  EXPECT_FALSE(is_expert_class("FFN"));
}

TEST(ExpertRegistryTest, RegisteredClassesFollowTheZooInRegistrationOrder) {
  ASSERT_TRUE(register_expert_class("order_b", scaled_linear_named("order_b")).is_ok());
  ASSERT_TRUE(register_expert_class("order_a", scaled_linear_named("order_a")).is_ok());
  const std::vector<std::string> classes = expert_classes();
  auto at = [&](const std::string& name) {
    EXPECT_EQ(std::count(classes.begin(), classes.end(), name), 1) << name;
    return std::find(classes.begin(), classes.end(), name) - classes.begin();
  };
  EXPECT_EQ(at("nop"), 3);
  EXPECT_LT(at("nop"), at("order_b"));
  EXPECT_LT(at("order_b"), at("order_a"));
  EXPECT_TRUE(is_expert_class("order_a"));
  EXPECT_TRUE(is_expert_class("order_b"));
}

TEST(ExpertRegistryTest, MakeExpertBuildsARegisteredClassWithSeedDeterminedWeights) {
  ASSERT_TRUE(test_experts::register_scaled_linear().is_ok());
  ASSERT_TRUE(is_expert_class(kScaledLinearClass));
  constexpr int64_t kH = 8;
  auto built = make_expert(kScaledLinearClass, kH, "sl.1.2", 42);
  ASSERT_TRUE(built.is_ok()) << built.status().to_string();
  std::shared_ptr<ExpertModule> expert = *built;
  EXPECT_EQ(expert->expert_cls(), kScaledLinearClass);
  ASSERT_NE(std::dynamic_pointer_cast<ScaledLinear>(expert), nullptr);
  EXPECT_EQ(count_parameters(*expert), kH * kH + kH);

  // Same (seed, uid): the same weights, whatever the global generator; another uid or seed: others.
  torch::manual_seed(1);
  auto a = params_of(*make_expert(kScaledLinearClass, kH, "sl.1.2", 42).value());
  torch::manual_seed(2);
  auto b = params_of(*make_expert(kScaledLinearClass, kH, "sl.1.2", 42).value());
  EXPECT_TRUE(all_equal(a, b));
  EXPECT_TRUE(all_equal(a, params_of(*expert)));
  EXPECT_FALSE(all_equal(a, params_of(*make_expert(kScaledLinearClass, kH, "sl.1.3", 42).value())));
  EXPECT_FALSE(all_equal(a, params_of(*make_expert(kScaledLinearClass, kH, "sl.1.2", 43).value())));

  // The zoo's scheme for its Linear (U(+-1/sqrt(fan_in))); the buffer as the factory set it.
  const auto& module = dynamic_cast<const ScaledLinear&>(*expert);
  const double bound = 1.0 / std::sqrt(static_cast<double>(kH));
  EXPECT_LE(module.linear()->weight.abs().max().item<double>(), bound);
  EXPECT_LE(module.linear()->bias.abs().max().item<double>(), bound);
  EXPECT_EQ(module.scale().item<double>(), test_experts::kScaledLinearScale);

  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({3, kH});
  torch::Tensor expected =
      torch::nn::functional::linear(x, module.linear()->weight, module.linear()->bias) *
      test_experts::kScaledLinearScale;
  EXPECT_TRUE(torch::allclose(expert->forward({x})[0], expected, 1e-6, 1e-6));
}

TEST(ExpertRegistryTest, EmptyMalformedAndTakenNamesAreRefusedAndNothingIsReplaced) {
  Status empty = register_expert_class("", scaled_linear_named(""));
  EXPECT_EQ(empty.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(empty.message(), "class name is empty")) << empty.message();

  for (const std::string& bad :
       std::vector<std::string>{"a.b", "a b", "a/b", "a\\b", "a\"b", "tab\tname", "ünï",
                                std::string(kMaxExpertClassBytes + 1, 'x')}) {
    Status s = register_expert_class(bad, scaled_linear_named(bad));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(contains(s.message(), "'" + bad + "' is not a valid expert class name"))
        << s.message();
    EXPECT_FALSE(is_expert_class(bad)) << bad;
  }
  const std::string longest(kMaxExpertClassBytes, 'y');
  EXPECT_TRUE(register_expert_class(longest, scaled_linear_named(longest)).is_ok());
  EXPECT_TRUE(is_expert_class(longest));

  Status no_factory = register_expert_class("no_factory", ExpertFactory());
  EXPECT_EQ(no_factory.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(no_factory.message(), "the factory of 'no_factory' is empty"))
      << no_factory.message();
  EXPECT_FALSE(is_expert_class("no_factory"));

  // A zoo class, and a registered one, keep their first factory.
  Status zoo = register_expert_class("ffn", scaled_linear_named("ffn"));
  EXPECT_EQ(zoo.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(zoo.message(), "expert class 'ffn' is already registered")) << zoo.message();
  EXPECT_EQ(count_parameters(*make_expert("ffn", 4, "e.0", 1).value()), 8 * 4 * 4 + 7 * 4);

  ASSERT_TRUE(test_experts::register_scaled_linear().is_ok());
  Status again = register_expert_class(kScaledLinearClass, [](const ExpertConfig&) {
    return Result<std::shared_ptr<ExpertModule>>(invalid_argument_error("the replacement ran"));
  });
  EXPECT_EQ(again.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(again.message(), std::string("'") + kScaledLinearClass + "'"))
      << again.message();
  EXPECT_TRUE(make_expert(kScaledLinearClass, 4, "e.0", 1).is_ok());
  const auto classes = expert_classes();
  EXPECT_EQ(std::count(classes.begin(), classes.end(), "ffn"), 1);
  EXPECT_EQ(std::count(classes.begin(), classes.end(), kScaledLinearClass), 1);
}

TEST(ExpertRegistryTest, AnUnknownClassErrorListsTheRegisteredOnes) {
  ASSERT_TRUE(test_experts::register_scaled_linear().is_ok());
  auto unknown = make_expert("moe_of_moes", 4, "e.0", 0);
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  const std::string& message = unknown.status().message();
  EXPECT_TRUE(contains(message, "unknown expert class 'moe_of_moes'")) << message;
  EXPECT_TRUE(contains(message, std::string("ffn, ffn_v08, transformer, nop, ")));
  EXPECT_TRUE(contains(message, kScaledLinearClass)) << message;
}

TEST(ExpertRegistryTest, FactoryFailuresComeBackAsErrorsNamingTheClass) {
  ASSERT_TRUE(
      register_expert_class("even_only",
                            [](const ExpertConfig& c) -> Result<std::shared_ptr<ExpertModule>> {
                              if (c.hidden_dim % 2 != 0)
                                return invalid_argument_error("needs an even hidden_dim");
                              return std::shared_ptr<ExpertModule>(
                                  std::make_shared<ScaledLinear>("even_only", c.hidden_dim, 1.0));
                            })
          .is_ok());
  EXPECT_TRUE(make_expert("even_only", 4, "e.0", 1).is_ok());
  auto odd = make_expert("even_only", 5, "e.0", 1);
  EXPECT_EQ(odd.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(odd.status().message(), "expert class 'even_only': needs an even hidden_dim");

  ASSERT_TRUE(
      register_expert_class("throws", [](const ExpertConfig&) -> std::shared_ptr<ExpertModule> {
        throw std::runtime_error("no such layer");
      }).is_ok());
  auto threw = make_expert("throws", 4, "e.0", 1);
  ASSERT_FALSE(threw.is_ok());
  EXPECT_TRUE(contains(threw.status().message(), "expert class 'throws': no such layer"))
      << threw.status().message();

  ASSERT_TRUE(register_expert_class("null_module", [](const ExpertConfig&) {
                return std::shared_ptr<ExpertModule>();
              }).is_ok());
  auto null = make_expert("null_module", 4, "e.0", 1);
  ASSERT_FALSE(null.is_ok());
  EXPECT_TRUE(contains(null.status().message(), "expert class 'null_module': the factory returned"))
      << null.status().message();

  // The module must carry its registered name: checkpoints record it.
  ASSERT_TRUE(register_expert_class("misnamed", scaled_linear_named("other_name")).is_ok());
  auto misnamed = make_expert("misnamed", 4, "e.0", 1);
  EXPECT_EQ(misnamed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(misnamed.status().message(), "expert_cls() is 'other_name'"))
      << misnamed.status().message();

  // Schemas that a trainer's info decoder would refuse are refused here.
  for (const auto& [cls, inputs] : std::vector<std::pair<std::string, std::vector<TensorSchema>>>{
           {"no_inputs", {}},
           {"too_many_inputs", std::vector<TensorSchema>(17, float_schema({4}))},
           {"zero_dim_input", {float_schema({4, 0})}},
           {"nine_dim_input", {float_schema(std::vector<int64_t>(9, 1))}}}) {
    ASSERT_TRUE(
        register_expert_class(cls,
                              [cls, inputs](const ExpertConfig&) -> std::shared_ptr<ExpertModule> {
                                return std::make_shared<Identity>(cls, inputs);
                              })
            .is_ok());
    auto refused = make_expert(cls, 4, "e.0", 1);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << cls;
    EXPECT_TRUE(contains(refused.status().message(), "expert class '" + cls + "': "))
        << refused.status().message();
  }
  ASSERT_TRUE(register_expert_class("scalar_rows",
                                    [](const ExpertConfig&) -> std::shared_ptr<ExpertModule> {
                                      return std::make_shared<Identity>(
                                          "scalar_rows",
                                          std::vector<TensorSchema>{float_schema({})});
                                    })
                  .is_ok());
  EXPECT_TRUE(make_expert("scalar_rows", 4, "e.0", 1).is_ok());

  // The dimension check applies to every class, before its factory runs.
  EXPECT_EQ(make_expert("even_only", 0, "e.0", 1).status().code(), StatusCode::kInvalidArgument);
}

TEST(ExpertRegistryTest, ConcurrentRegistrationsLandOnceEach) {
  constexpr int kThreads = 8;
  std::atomic<int> shared_wins{0};
  std::atomic<int> own_failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      const std::string own = "concurrent_" + std::to_string(i);
      if (!register_expert_class(own, scaled_linear_named(own)).is_ok()) ++own_failures;
      if (register_expert_class("concurrent_shared", scaled_linear_named("concurrent_shared"))
              .is_ok())
        ++shared_wins;
      (void)expert_classes();
      (void)is_expert_class(own);
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(own_failures.load(), 0);
  EXPECT_EQ(shared_wins.load(), 1);
  const auto classes = expert_classes();
  for (int i = 0; i < kThreads; ++i) {
    const std::string own = "concurrent_" + std::to_string(i);
    EXPECT_EQ(std::count(classes.begin(), classes.end(), own), 1) << own;
    EXPECT_TRUE(make_expert(own, 4, "e.0", 1).is_ok()) << own;
  }
  EXPECT_EQ(std::count(classes.begin(), classes.end(), "concurrent_shared"), 1);
}

}  // namespace
}  // namespace hivemind::runtime
