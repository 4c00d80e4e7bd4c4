// slurm/srun-wrap.sh with fake launcher environments and a child script: the rank mapping, per-rank
// logs, GPU binding, exit statuses and signal forwarding. Each run gets an exact environment
// (`env -i`), so nothing from the machine running the tests leaks in.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/spawn.h>

#ifndef HIVEMIND_SOURCE_DIR
#error "HIVEMIND_SOURCE_DIR must name the source tree"
#endif

namespace hivemind {
namespace {

namespace fs = std::filesystem;
using Env = std::map<std::string, std::string>;

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class SrunWrapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("srun_wrap_test." + std::to_string(getpid()) + "." + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Starts `srun-wrap.sh <wrap_args> sh -c <script>` with exactly `env` (plus PATH and OUT); its
  // stdout and stderr land in dir_/out/rank-0.log.
  std::unique_ptr<SpawnedGroup> start(const Env& env, const std::vector<std::string>& wrap_args,
                                      const std::string& script) {
    SpawnOptions options;
    options.program = "/usr/bin/env";
    options.args = {"-i", "PATH=" + std::string(std::getenv("PATH")), "OUT=" + dir_.string(),
                    "HIVEMIND_NODE_ADDR=10.9.8.7"};
    for (const auto& [key, value] : env)
      options.args.push_back(fmt::format("{}={}", key, value));
    options.args.push_back(std::string(HIVEMIND_SOURCE_DIR) + "/slurm/srun-wrap.sh");
    options.args.insert(options.args.end(), wrap_args.begin(), wrap_args.end());
    options.args.insert(options.args.end(), {"sh", "-c", script});
    options.log_dir = (dir_ / "out").string();
    auto group = SpawnedGroup::start(options);
    EXPECT_TRUE(group.is_ok()) << group.status().to_string();
    return group.is_ok() ? std::move(*group) : nullptr;
  }
  // Runs to completion; returns the wrapper's exit code.
  int run(const Env& env, const std::vector<std::string>& wrap_args, const std::string& script) {
    auto group = start(env, wrap_args, script);
    if (!group) return -1;
    SpawnReport report = group->wait(Deadline::after(Milliseconds(60'000)));
    const RankExit& wrapper = report.ranks.at(0);
    return wrapper.term_signal != 0 ? 128 + wrapper.term_signal : wrapper.exit_code;
  }
  std::string output() const { return read_file(dir_ / "out" / "rank-0.log"); }
  void wait_marker(const std::string& name) {
    auto marker =
        wait_for_bootstrap_file((dir_ / name).string(), Deadline::after(Milliseconds(60'000)));
    ASSERT_TRUE(marker.is_ok()) << marker.status().to_string() << "\n" << output();
  }

  fs::path dir_;
};

constexpr const char* kPrintRanks =
    "echo \"$HIVEMIND_RANK $HIVEMIND_WORLD_SIZE $HIVEMIND_LOCAL_RANK $HIVEMIND_NODE_RANK "
    "$HIVEMIND_LAUNCHER\"";

TEST_F(SrunWrapTest, MapsSlurm) {
  EXPECT_EQ(run({{"SLURM_PROCID", "3"},
                 {"SLURM_NTASKS", "8"},
                 {"SLURM_STEP_NUM_TASKS", "4"},
                 {"SLURM_LOCALID", "1"},
                 {"SLURM_NODEID", "1"},
                 {"SLURM_STEP_ID", "0"}},
                {}, kPrintRanks),
            0);
  EXPECT_EQ(output(), "3 4 1 1 slurm\n");
}

TEST_F(SrunWrapTest, SlurmJobSizeWhenNoStepSize) {
  EXPECT_EQ(run({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}}, {}, kPrintRanks), 0);
  EXPECT_EQ(output(), "1 2 0 0 slurm\n");
}

TEST_F(SrunWrapTest, OpenMpiWinsOverSlurmOfTheAllocation) {
  // mpirun inside an sbatch script: the batch shell's SLURM_PROCID=0 is inherited by every rank.
  EXPECT_EQ(run({{"OMPI_COMM_WORLD_RANK", "5"},
                 {"OMPI_COMM_WORLD_SIZE", "6"},
                 {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                 {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                 {"OMPI_COMM_WORLD_NODE_RANK", "1"},
                 {"SLURM_PROCID", "0"},
                 {"SLURM_NTASKS", "1"}},
                {}, kPrintRanks),
            0);
  EXPECT_EQ(output(), "5 6 1 2 openmpi\n");
}

TEST_F(SrunWrapTest, MapsPmix) {
  EXPECT_EQ(run({{"PMIX_RANK", "2"},
                 {"SLURM_PROCID", "2"},
                 {"SLURM_STEP_NUM_TASKS", "3"},
                 {"SLURM_LOCALID", "0"},
                 {"SLURM_NODEID", "2"}},
                {}, kPrintRanks),
            0);
  EXPECT_EQ(output(), "2 3 0 2 pmix\n");
}

TEST_F(SrunWrapTest, WithoutLauncherKeepsInheritedOrDefaults) {
  EXPECT_EQ(run({{"HIVEMIND_RANK", "1"}, {"HIVEMIND_WORLD_SIZE", "2"}}, {}, kPrintRanks), 0);
  EXPECT_EQ(output(), "1 2 0 0 none\n");
  EXPECT_EQ(run({}, {}, kPrintRanks), 0);
  EXPECT_EQ(output(), "0 1 0 0 none\n");
}

TEST_F(SrunWrapTest, MalformedVariablesFailNamingThem) {
  EXPECT_EQ(run({{"SLURM_PROCID", "abc"}}, {}, "echo ran"), 2);
  EXPECT_NE(output().find("SLURM_PROCID='abc'"), std::string::npos) << output();
  EXPECT_EQ(output().find("ran"), std::string::npos);
  EXPECT_EQ(run({{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}}, {}, "echo ran"), 2);
  EXPECT_NE(output().find("not below the world size 4"), std::string::npos) << output();
  EXPECT_EQ(run({}, {"--bogus"}, "echo ran"), 2);
  EXPECT_EQ(run({}, {"--forward-signals", "maybe"}, "echo ran"), 2);
}

TEST_F(SrunWrapTest, ExitsWithTheChildsStatus) {
  EXPECT_EQ(run({}, {}, "exit 7"), 7);
  EXPECT_EQ(run({}, {}, "kill -KILL $$"), 128 + SIGKILL);
  EXPECT_EQ(run({}, {}, "true"), 0);
}

TEST_F(SrunWrapTest, PerRankLogFiles) {
  Env slurm = {
      {"SLURM_JOB_ID", "77"}, {"SLURM_STEP_ID", "3"}, {"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}};
  std::string logs = (dir_ / "logs").string();
  EXPECT_EQ(run(slurm, {"--log-dir", logs}, "echo out; echo err >&2; echo \"$HIVEMIND_RANK_LOG\""),
            0);
  EXPECT_EQ(read_file(dir_ / "logs" / "77.3.1.log"), "out\nerr\n" + logs + "/77.3.1.log\n");
  EXPECT_EQ(output(), "") << "rank 1 writes only to its log";

  // Rank 0 also writes to the job's output, unless --no-tee; the directory also comes from the
  // variable.
  slurm["SLURM_PROCID"] = "0";
  slurm["HIVEMIND_LOG_DIR"] = logs;
  EXPECT_EQ(run(slurm, {}, "echo zero"), 0);
  EXPECT_EQ(read_file(dir_ / "logs" / "77.3.0.log"), "zero\n");
  EXPECT_EQ(output(), "zero\n");
  EXPECT_EQ(run(slurm, {"--no-tee"}, "echo again"), 0);
  EXPECT_EQ(read_file(dir_ / "logs" / "77.3.0.log"), "zero\nagain\n") << "logs are appended";
  EXPECT_EQ(output(), "");

  EXPECT_EQ(run({}, {"--log-dir=" + logs}, "echo local"), 0);
  EXPECT_EQ(read_file(dir_ / "logs" / "local.0.0.log"), "local\n");
}

TEST_F(SrunWrapTest, BindsOneGpuPerLocalRank) {
  Env env = {{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "2"}};
  env["CUDA_VISIBLE_DEVICES"] = "4,5,6,7";
  EXPECT_EQ(run(env, {"--bind-gpu"}, "echo \"$CUDA_VISIBLE_DEVICES\""), 0);
  EXPECT_EQ(output(), "6\n");
  env["CUDA_VISIBLE_DEVICES"] = "3";  // already bound by Slurm (--gpus-per-task=1)
  EXPECT_EQ(run(env, {"--bind-gpu"}, "echo \"$CUDA_VISIBLE_DEVICES\""), 0);
  EXPECT_EQ(output(), "3\n");
  env.erase("CUDA_VISIBLE_DEVICES");
  env["HIVEMIND_BIND_GPU"] = "1";
  EXPECT_EQ(run(env, {}, "echo \"$CUDA_VISIBLE_DEVICES\""), 0);
  EXPECT_EQ(output(), "2\n");
  env.erase("HIVEMIND_BIND_GPU");
  EXPECT_EQ(run(env, {}, "echo \"${CUDA_VISIBLE_DEVICES-unset}\""), 0);
  EXPECT_EQ(output(), "unset\n");
}

TEST_F(SrunWrapTest, SignalForwardingDecision) {
  auto decision = [&](const Env& env, const std::vector<std::string>& args) {
    Env verbose = env;
    verbose["HIVEMIND_WRAP_VERBOSE"] = "1";
    EXPECT_EQ(run(verbose, args, "true"), 0);
    return output().find("forward signals: yes") != std::string::npos;
  };
  EXPECT_TRUE(decision({}, {}));
  // srun tasks and mpirun ranks get every signal from their launcher directly.
  EXPECT_FALSE(
      decision({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_STEP_ID", "0"}}, {}));
  EXPECT_FALSE(decision({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"}}, {}));
  // The batch shell of an sbatch job has no SLURM_STEP_ID: nobody else signals the child there.
  EXPECT_TRUE(decision({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}, {}));
  EXPECT_TRUE(decision({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_STEP_ID", "0"}},
                       {"--forward-signals", "yes"}));
  EXPECT_FALSE(decision({}, {"--forward-signals=no"}));
}

// A child that counts USR1, records it, and exits 0 on TERM reporting the count.
constexpr const char* kSignalChild =
    "mark() { echo \"$2\" > \"$OUT/$1.tmp\" && mv \"$OUT/$1.tmp\" \"$OUT/$1\"; }; n=0; "
    "trap 'n=$((n+1)); mark usr1-$n x' USR1; "
    "trap 'mark term \"usr1=$n\"; exit 0' TERM; "
    "trap 'mark usr2 \"usr1=$n\"; exit 0' USR2; "
    "echo $$ > \"$OUT/child.pid.tmp\" && mv \"$OUT/child.pid.tmp\" \"$OUT/child.pid\"; "
    "while :; do sleep 0.05; done";

TEST_F(SrunWrapTest, ForwardsUsr1AndTermToTheChild) {
  auto group = start({}, {}, kSignalChild);
  ASSERT_TRUE(group);
  wait_marker("child.pid");
  pid_t wrapper = group->pids().at(0);
  ASSERT_EQ(::kill(wrapper, SIGUSR1), 0);  // the wrapper alone, not its process group
  wait_marker("usr1-1");
  ASSERT_EQ(::kill(wrapper, SIGTERM), 0);
  SpawnReport report = group->wait(Deadline::after(Milliseconds(60'000)));
  EXPECT_TRUE(report.ranks.at(0).ok()) << report.ranks.at(0).describe() << "\n" << output();
  EXPECT_EQ(read_file(dir_ / "term"), "usr1=1\n");
}

TEST_F(SrunWrapTest, UnderALauncherTheProgramReplacesTheWrapper) {
  // srun and mpirun signal every process of a task: the wrapper execs the program, which then gets
  // each signal once, and its exit status is the task's.
  auto group = start({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_STEP_ID", "0"}}, {},
                     kSignalChild);
  ASSERT_TRUE(group);
  wait_marker("child.pid");
  pid_t task = group->pids().at(0);
  EXPECT_EQ(std::stoi(read_file(dir_ / "child.pid")), task);
  ASSERT_EQ(::kill(task, SIGUSR1), 0);
  wait_marker("usr1-1");
  ASSERT_EQ(::kill(task, SIGTERM), 0);
  SpawnReport report = group->wait(Deadline::after(Milliseconds(60'000)));
  EXPECT_TRUE(report.ranks.at(0).ok()) << report.ranks.at(0).describe() << "\n" << output();
  EXPECT_EQ(read_file(dir_ / "term"), "usr1=1\n");
}

TEST_F(SrunWrapTest, SignalToTheWholeTaskLeavesTheChildsStatus) {
  // What Slurm does on scancel: SIGTERM to every process of the task at once. The wrapper's wait is
  // interrupted by the signal while the child handles it and exits 0: the wrapper must report 0,
  // not the 143 of its interrupted wait. Repeated, because the two orders of events race. The child
  // exits as fast as it can on SIGTERM (bash runs the trap at once, without waiting for a
  // foreground command), which is the order that used to lose the child's status.
  const std::string fast_child =
      "exec bash -c 'trap \"exit 0\" TERM; echo $$ > \"$OUT/child.pid.tmp\" && "
      "mv \"$OUT/child.pid.tmp\" \"$OUT/child.pid\"; while :; do sleep 1 & wait $!; done'";
  // Odd rounds: rank 0 with a log directory, where the wrapper stays (to let tee finish) and must
  // not be killed by the signal either.
  for (int round = 0; round < 20; ++round) {
    fs::remove(dir_ / "child.pid");
    std::vector<std::string> args;
    if (round % 2 == 1) args = {"--log-dir", (dir_ / "logs").string()};
    auto group = start({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_STEP_ID", "0"}}, args,
                       fast_child);
    ASSERT_TRUE(group);
    wait_marker("child.pid");
    group->signal_all(SIGTERM);  // the process group: the wrapper, the child and the child's sleep
    SpawnReport report = group->wait(Deadline::after(Milliseconds(60'000)));
    ASSERT_TRUE(report.ranks.at(0).ok())
        << "round " << round << ": " << report.ranks.at(0).describe() << "\n"
        << output();
  }
}

}  // namespace
}  // namespace hivemind
