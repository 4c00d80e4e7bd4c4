// SpawnedGroup with /bin/sh children: ranks and their variables, exit codes, bringing the others
// down on the first failure, the deadline, per-rank logs, signals. Synchronisation is by files the
// children write atomically (write + rename) and the test waits for with a deadline; nothing sleeps
// to wait.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/spawn.h>

#ifndef HIVEMIND_SPAWN_SELF_HELPER
#error "HIVEMIND_SPAWN_SELF_HELPER must name the spawn_self_helper program"
#endif

namespace hivemind {
namespace {

namespace fs = std::filesystem;

const Deadline kGenerous() {
  return Deadline::after(Milliseconds(60'000));
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class SpawnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        fs::temp_directory_path() / ("spawn_test." + std::to_string(getpid()) + "." + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  SpawnOptions sh(const std::string& script, int world_size) {
    SpawnOptions options;
    options.program = "sh";  // looked up in PATH
    options.args = {"-c", script};
    options.world_size = world_size;
    options.env = {{"OUT", dir_.string()}};
    return options;
  }
  // Waits for a marker file a child wrote atomically.
  void wait_marker(const std::string& name) {
    auto marker = wait_for_bootstrap_file((dir_ / name).string(), kGenerous());
    ASSERT_TRUE(marker.is_ok()) << marker.status().to_string();
  }

  fs::path dir_;
};

// Shell snippet: write "$2" to $OUT/$1 atomically.
constexpr const char* kMark =
    "mark() { echo \"$2\" > \"$OUT/$1.tmp\" && mv \"$OUT/$1.tmp\" \"$OUT/$1\"; }; ";

TEST_F(SpawnTest, EveryRankSeesItsVariables) {
  auto options = sh(
      std::string(kMark) +
          "mark rank-$HIVEMIND_RANK "
          "\"$HIVEMIND_RANK/$HIVEMIND_WORLD_SIZE/$HIVEMIND_LOCAL_RANK/$HIVEMIND_NODE_RANK/$EXTRA\"",
      4);
  options.ranks_per_node = 2;
  options.env.push_back({"EXTRA", "x"});
  SpawnReport report = spawn_and_wait(options, kGenerous());
  ASSERT_TRUE(report.status.is_ok()) << report.status.to_string();
  EXPECT_EQ(report.exit_code(), 0);
  ASSERT_EQ(report.ranks.size(), 4u);
  const char* expected[] = {"0/4/0/0/x\n", "1/4/1/0/x\n", "2/4/0/1/x\n", "3/4/1/1/x\n"};
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_EQ(read_file(dir_ / ("rank-" + std::to_string(rank))), expected[rank]);
    EXPECT_TRUE(report.ranks[static_cast<size_t>(rank)].ok());
  }
}

TEST_F(SpawnTest, InheritedRankVariablesAreReplaced) {
  setenv("HIVEMIND_RANK", "9", 1);
  setenv("HIVEMIND_WORLD_SIZE", "10", 1);
  auto options = sh(std::string(kMark) + "mark r \"$HIVEMIND_RANK/$HIVEMIND_WORLD_SIZE\"", 1);
  SpawnReport report = spawn_and_wait(options, kGenerous());
  unsetenv("HIVEMIND_RANK");
  unsetenv("HIVEMIND_WORLD_SIZE");
  ASSERT_TRUE(report.status.is_ok()) << report.status.to_string();
  EXPECT_EQ(read_file(dir_ / "r"), "0/1\n");
}

TEST_F(SpawnTest, FirstFailureStopsTheOthers) {
  // Rank 2 fails at once; the others would run for ten minutes (in a child of sh, so only a signal
  // to the whole process group ends them quickly).
  auto options =
      sh("if [ \"$HIVEMIND_RANK\" = 2 ]; then exit 3; fi; sleep 600; echo unreachable", 4);
  SpawnReport report = spawn_and_wait(options, kGenerous());
  ASSERT_FALSE(report.status.is_ok());
  ASSERT_TRUE(report.first_failed.has_value());
  EXPECT_EQ(*report.first_failed, 2);
  EXPECT_EQ(report.exit_code(), 3);
  EXPECT_FALSE(report.timed_out);
  EXPECT_NE(report.status.message().find("rank 2"), std::string::npos) << report.status.message();
  EXPECT_NE(report.status.message().find("code 3"), std::string::npos) << report.status.message();
  for (int rank : {0, 1, 3}) {
    const RankExit& exit = report.ranks[static_cast<size_t>(rank)];
    EXPECT_TRUE(exit.stopped_by_launcher) << exit.describe();
    EXPECT_EQ(exit.term_signal, SIGTERM) << exit.describe();
  }
  EXPECT_FALSE(report.ranks[2].stopped_by_launcher);
}

TEST_F(SpawnTest, RanksIgnoringTermAreKilledAfterTheGrace) {
  auto options = sh(std::string(kMark) +
                        "trap '' TERM; if [ \"$HIVEMIND_RANK\" = 1 ]; then exit 5; fi; "
                        "mark ready-$HIVEMIND_RANK x; sleep 600",
                    2);
  options.kill_grace = Milliseconds(100);
  auto group = SpawnedGroup::start(options);
  ASSERT_TRUE(group.is_ok()) << group.status().to_string();
  wait_marker("ready-0");  // rank 0 has installed its trap before the failure brings it down
  SpawnReport report = (*group)->wait(kGenerous());
  EXPECT_EQ(*report.first_failed, 1);
  EXPECT_EQ(report.exit_code(), 5);
  EXPECT_EQ(report.ranks[0].term_signal, SIGKILL) << report.ranks[0].describe();
}

TEST_F(SpawnTest, DeadlineTerminatesEveryone) {
  auto options = sh("sleep 600", 3);
  SpawnReport report = spawn_and_wait(options, Deadline::after(Milliseconds(100)));
  EXPECT_TRUE(report.timed_out);
  EXPECT_EQ(report.status.code(), StatusCode::kTimeout);
  EXPECT_EQ(report.exit_code(), 124);
  EXPECT_FALSE(report.first_failed.has_value());
  for (const auto& rank : report.ranks) {
    EXPECT_TRUE(rank.stopped_by_launcher);
    EXPECT_EQ(rank.term_signal, SIGTERM);
  }
}

TEST_F(SpawnTest, SignalAllReachesEveryRank) {
  auto options =
      sh(std::string(kMark) +
             "trap 'mark usr1-$HIVEMIND_RANK got; exit 0' USR1; mark ready-$HIVEMIND_RANK x; "
             "while :; do sleep 0.05; done",
         3);
  auto group = SpawnedGroup::start(options);
  ASSERT_TRUE(group.is_ok()) << group.status().to_string();
  for (int rank = 0; rank < 3; ++rank)
    wait_marker("ready-" + std::to_string(rank));
  (*group)->signal_all(SIGUSR1);
  SpawnReport report = (*group)->wait(kGenerous());
  // The whole process group gets the signal: sh runs the trap (exit 0); its sleep dies of it.
  EXPECT_TRUE(report.status.is_ok()) << report.status.to_string();
  for (int rank = 0; rank < 3; ++rank)
    EXPECT_EQ(read_file(dir_ / ("usr1-" + std::to_string(rank))), "got\n");
}

TEST_F(SpawnTest, PerRankLogsCaptureStdoutAndStderr) {
  auto options = sh("echo out-$HIVEMIND_RANK; echo err-$HIVEMIND_RANK >&2", 2);
  options.log_dir = (dir_ / "logs" / "nested").string();
  SpawnReport report = spawn_and_wait(options, kGenerous());
  ASSERT_TRUE(report.status.is_ok()) << report.status.to_string();
  EXPECT_EQ(read_file(dir_ / "logs" / "nested" / "rank-0.log"), "out-0\nerr-0\n");
  EXPECT_EQ(read_file(dir_ / "logs" / "nested" / "rank-1.log"), "out-1\nerr-1\n");
}

TEST_F(SpawnTest, UnrunnableProgramsAreErrors) {
  SpawnOptions missing;
  missing.program = (dir_ / "no-such-program").string();
  missing.world_size = 2;
  SpawnReport report = spawn_and_wait(missing, kGenerous());
  EXPECT_EQ(report.status.code(), StatusCode::kIoError);
  EXPECT_NE(report.status.message().find("no-such-program"), std::string::npos)
      << report.status.message();
  EXPECT_TRUE(report.ranks.empty());
  EXPECT_NE(report.exit_code(), 0);

  std::ofstream(dir_ / "not-executable") << "#!/bin/sh\n";
  SpawnOptions not_executable;
  not_executable.program = (dir_ / "not-executable").string();
  EXPECT_EQ(spawn_and_wait(not_executable, kGenerous()).status.code(), StatusCode::kIoError);

  SpawnOptions not_in_path;
  not_in_path.program = "hivemind-no-such-program-in-path";
  EXPECT_EQ(spawn_and_wait(not_in_path, kGenerous()).status.code(), StatusCode::kNotFound);

  SpawnOptions zero;
  zero.program = "sh";
  zero.world_size = 0;
  EXPECT_EQ(spawn_and_wait(zero, kGenerous()).status.code(), StatusCode::kInvalidArgument);
}

TEST_F(SpawnTest, SpawnSelfFlag) {
  SpawnOptions options;
  options.program = HIVEMIND_SPAWN_SELF_HELPER;
  options.args = {dir_.string(), "--spawn", "3", "--keep", "me"};
  SpawnReport report = spawn_and_wait(options, kGenerous());
  ASSERT_TRUE(report.status.is_ok()) << report.status.to_string();
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(read_file(dir_ / ("rank-" + std::to_string(rank) + ".txt")),
              std::to_string(rank) + " 3 " + dir_.string() + " --keep me\n");
  }

  options.args = {dir_.string(), "--spawn=2", "--fail-rank", "1"};
  report = spawn_and_wait(options, kGenerous());
  EXPECT_EQ(report.exit_code(), 3) << "the launcher returns the failed rank's code";

  options.args = {dir_.string(), "--spawn", "zero"};
  report = spawn_and_wait(options, kGenerous());
  EXPECT_EQ(report.exit_code(), 2);
}

TEST(SpawnFlagTest, ParsesOnlyItsFlag) {
  const char* no_flag[] = {"prog", "--steps", "3"};
  auto none = maybe_spawn_self(3, no_flag, Deadline::after(Milliseconds(1000)));
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->has_value());
  for (const char* bad : {"0", "-1", "x", "5000"}) {
    const char* argv[] = {"prog", "--spawn", bad};
    EXPECT_EQ(maybe_spawn_self(3, argv, Deadline::after(Milliseconds(1000))).status().code(),
              StatusCode::kInvalidArgument)
        << bad;
  }
  const char* dangling[] = {"prog", "--spawn"};
  EXPECT_FALSE(maybe_spawn_self(2, dangling, Deadline::after(Milliseconds(1000))).is_ok());
}

}  // namespace
}  // namespace hivemind
