// TorchAverager: a module's parameters averaged in place between two averagers, and the tensors it
// refuses, each named with what is wrong.
#include <filesystem>
#include <future>

#include <gtest/gtest.h>
#include <unistd.h>

#include <hivemind/averaging/torch_averager.h>

namespace hivemind::averaging {
namespace {

AveragerOptions launcher(int rank, const std::string& file) {
  AveragerOptions options;
  options.key = "torch.dense";
  options.launcher = LauncherGroupOptions{rank, 2, file};
  options.round_timeout = std::chrono::seconds(20);
  options.gather_window = std::chrono::seconds(5);
  return options;
}

TEST(TorchAverager, ModuleParametersBecomeTheirMeanInPlace) {
  const std::string dir = ::testing::TempDir() + "/torch-averager-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  torch::manual_seed(1);
  torch::nn::Linear a(5, 3), b(5, 3);
  std::vector<torch::Tensor> expected;
  for (size_t i = 0; i < a->parameters().size(); ++i)
    expected.push_back((a->parameters()[i] + b->parameters()[i]).detach() / 2);
  const void* weight_memory = a->weight.data_ptr();

  auto first = TorchAverager::create(a->parameters(), launcher(0, dir + "/leader"));
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  auto second = TorchAverager::create(b->parameters(), launcher(1, dir + "/leader"));
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  auto round_a = (*first)->step_async();
  auto round_b = (*second)->step_async();
  RoundReport ra = round_a.get(), rb = round_b.get();
  EXPECT_TRUE(ra.ok) << ra.failure;
  EXPECT_TRUE(rb.ok) << rb.failure;
  EXPECT_EQ(ra.backend, "transport");
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a->parameters()[i], expected[i], 1e-6, 1e-7)) << i;
    EXPECT_TRUE(torch::equal(a->parameters()[i], b->parameters()[i])) << i;
  }
  EXPECT_EQ(a->weight.data_ptr(), weight_memory);  // in place
  (*first)->close();
  (*second)->close();
  std::filesystem::remove_all(dir);
}

TEST(TorchAverager, RefusesWhatItCannotAverageNamingTheTensor) {
  auto error_of = [](std::vector<torch::Tensor> tensors) {
    auto refs = tensor_refs(tensors);
    EXPECT_FALSE(refs.is_ok());
    return refs.is_ok() ? std::string() : refs.status().message();
  };
  auto f = torch::zeros({4, 4});
  EXPECT_NE(error_of({f, torch::zeros({3}, torch::kInt64)}).find("tensor 1 is Long"),
            std::string::npos);
  EXPECT_NE(error_of({f.t()}).find("tensor 0 is not contiguous"), std::string::npos);
  EXPECT_NE(error_of({f, torch::Tensor()}).find("tensor 1 is undefined"), std::string::npos);
  EXPECT_NE(error_of({f.to_sparse()}).find("not dense"), std::string::npos);
  auto refs = tensor_refs({f, torch::zeros({2}, torch::kBFloat16)});
  ASSERT_TRUE(refs.is_ok());
  EXPECT_EQ((*refs)[1].dtype, quant::DType::kBFloat16);
  EXPECT_EQ((*refs)[0].elements, 16u);
  // An averager over no tensors, or mixed ones, is refused by the core's check too.
  auto created = TorchAverager::create({}, launcher(0, "/nonexistent/leader"));
  ASSERT_FALSE(created.is_ok());
  EXPECT_NE(created.status().message().find("at least one tensor"), std::string::npos);
}

}  // namespace
}  // namespace hivemind::averaging
