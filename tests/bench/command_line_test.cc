// hivemind-bench's command line: a benchmark sees the options it declares, and anything else is a
// usage error (exit 2) naming what was wrong, before the benchmark runs.
#include "support/command_line.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/report.h"

namespace hivemind::bench {
namespace {

struct ProbeOptions {
  int count = 3;
  std::vector<int> sizes{1, 2};
  bool skip = false;

  void declare(CLI::App& cli) {
    cli.add_option("--count", count)->check(CLI::PositiveNumber);
    cli.add_option("--sizes", sizes)->delimiter(',');
    cli.add_flag("--skip", skip);
  }
};

// What the last run of the probe saw.
struct ProbeRun {
  int runs = 0;
  ProbeOptions options;
  bool json = false;
};
ProbeRun last;

}  // namespace

HIVEMIND_BENCH(probe, "a benchmark that records its options", ProbeOptions) {
  ++last.runs;
  last.options = options;
  last.json = reporter.json();
  return 7;
}

namespace {

int run(std::vector<std::string> args) {
  args.insert(args.begin(), "hivemind-bench");
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  return run_command_line(static_cast<int>(argv.size()), argv.data());
}

class BenchCommandLine : public ::testing::Test {
 protected:
  void SetUp() override { last = ProbeRun{}; }
};

TEST_F(BenchCommandLine, PassesDeclaredOptionsToTheBenchmark) {
  EXPECT_EQ(run({"probe", "--count", "5", "--sizes=4,8,16", "--skip", "--json"}), 7);
  EXPECT_EQ(last.runs, 1);
  EXPECT_EQ(last.options.count, 5);
  EXPECT_EQ(last.options.sizes, (std::vector<int>{4, 8, 16}));
  EXPECT_TRUE(last.options.skip);
  EXPECT_TRUE(last.json);
}

TEST_F(BenchCommandLine, KeepsDefaultsOfOptionsNotGiven) {
  EXPECT_EQ(run({"probe"}), 7);
  EXPECT_EQ(last.options.count, 3);
  EXPECT_EQ(last.options.sizes, (std::vector<int>{1, 2}));
  EXPECT_FALSE(last.options.skip);
  EXPECT_FALSE(last.json);
}

TEST_F(BenchCommandLine, RejectsAMistypedOptionNamingIt) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run({"probe", "--cuont", "5"}), 2);
  std::string error = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(last.runs, 0);
  EXPECT_NE(error.find("--cuont"), std::string::npos) << error;
  EXPECT_NE(error.find("hivemind-bench probe"), std::string::npos) << error;
}

TEST_F(BenchCommandLine, RejectsAValueThatDoesNotParse) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run({"probe", "--count", "five"}), 2);
  std::string error = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(last.runs, 0);
  EXPECT_NE(error.find("--count"), std::string::npos) << error;
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run({"probe", "--count", "0"}), 2);  // outside the declared check
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(last.runs, 0);
}

TEST_F(BenchCommandLine, RejectsAStrayArgument) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run({"probe", "extra"}), 2);
  std::string error = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(error.find("extra"), std::string::npos) << error;
  EXPECT_EQ(last.runs, 0);
}

TEST_F(BenchCommandLine, RejectsAnUnknownBenchmark) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run({"prboe"}), 2);
  std::string error = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(error.find("unknown benchmark 'prboe'"), std::string::npos) << error;
}

TEST_F(BenchCommandLine, ListsBenchmarksWithoutAName) {
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run({}), 2);
  std::string list = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(list.find("probe"), std::string::npos) << list;
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run({"probe", "--help"}), 0);
  std::string help = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(help.find("--count"), std::string::npos) << help;
  EXPECT_EQ(last.runs, 0);
}

}  // namespace
}  // namespace hivemind::bench
