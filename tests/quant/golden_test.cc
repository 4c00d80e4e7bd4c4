// The CPU path reproduces the committed golden vectors byte for byte, with both loop sets.
#include <filesystem>

#include <gtest/gtest.h>

#include <hivemind/quant/cpu_kernels.h>

#include "golden_cases.h"

namespace hivemind::quant::testing {
namespace {

std::vector<GoldenFile> load_all() {
  std::vector<GoldenFile> files;
  for (const auto& c : golden_cases()) {
    auto bytes = read_file(golden_dir() + "/" + c.name + ".bin");
    auto parsed = parse(bytes);
    EXPECT_TRUE(parsed.has_value()) << "missing or malformed golden file for " << c.name;
    if (parsed) files.push_back(std::move(*parsed));
  }
  return files;
}

void expect_matches(const GoldenFile& f) {
  GoldenExpected got = compute_expected(f.input);
  EXPECT_EQ(got.first_bad_block, f.expected.first_bad_block) << f.input.name;
  EXPECT_EQ(got.scales, f.expected.scales) << f.input.name;
  EXPECT_EQ(got.zero_points, f.expected.zero_points) << f.input.name;
  EXPECT_EQ(got.codes, f.expected.codes) << f.input.name;
}

TEST(QuantGolden, EveryCaseHasACommittedFile) {
  auto files = load_all();
  EXPECT_EQ(files.size(), golden_cases().size());
  size_t on_disk = 0;
  for (const auto& entry : std::filesystem::directory_iterator(golden_dir())) {
    if (entry.path().extension() == ".bin") ++on_disk;
  }
  EXPECT_EQ(on_disk, golden_cases().size()) << "stale golden files in " << golden_dir();
}

TEST(QuantGolden, GeneratedInputsEqualCommittedInputs) {
  // The generator is integer-only; if this fails the committed files were made by another
  // generator.
  auto files = load_all();
  auto cases = golden_cases();
  ASSERT_EQ(files.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(files[i].input.input, cases[i].input) << cases[i].name;
    EXPECT_EQ(files[i].input.n, cases[i].n) << cases[i].name;
  }
}

TEST(QuantGolden, CpuMatchesWithTheDefaultLoops) {
  for (const auto& f : load_all())
    expect_matches(f);
}

TEST(QuantGolden, CpuMatchesWithThePortableLoops) {
  ASSERT_TRUE(select_cpu_isa("portable").is_ok());
  for (const auto& f : load_all())
    expect_matches(f);
  ASSERT_TRUE(select_cpu_isa("auto").is_ok());
}

TEST(QuantGolden, CoversThePolicyCases) {
  // The files must exercise what the spec promises: flushed blocks, non-finite blocks, ties.
  bool saw_nonfinite = false, saw_zero_scale = false;
  for (const auto& f : load_all()) {
    saw_nonfinite |= f.expected.first_bad_block != UINT64_MAX;
    for (size_t b = 0; b + 4 <= f.expected.scales.size(); b += 4) {
      uint32_t bits = f.expected.scales[b] | (f.expected.scales[b + 1] << 8) |
                      (f.expected.scales[b + 2] << 16) |
                      (static_cast<uint32_t>(f.expected.scales[b + 3]) << 24);
      saw_zero_scale |= bits == 0;
    }
  }
  EXPECT_TRUE(saw_nonfinite);
  EXPECT_TRUE(saw_zero_scale);
}

}  // namespace
}  // namespace hivemind::quant::testing
