#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/common/env.h>

namespace hivemind {
namespace {

// Sets variables for one test and restores the previous environment afterwards.
class ScopedEnv {
 public:
  void set(const char* name, const char* value) {
    saved_.push_back({name, env_string(name)});
    setenv(name, value, 1);
  }
  void unset(const char* name) {
    saved_.push_back({name, env_string(name)});
    unsetenv(name);
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// Clears every launcher variable so each test starts from "not launched".
void clear_launchers(ScopedEnv& env) {
  for (const char* name :
       {"HIVEMIND_RANK", "HIVEMIND_WORLD_SIZE", "HIVEMIND_LOCAL_RANK", "HIVEMIND_NODE_RANK",
        "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_NODE_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_RANK", "SLURM_PROCID",
        "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NODEID", "RANK",
        "WORLD_SIZE", "LOCAL_RANK", "GROUP_RANK"}) {
    env.unset(name);
  }
}

TEST(EnvTest, FlagNamesMapToVariables) {
  EXPECT_EQ(env_name_for_flag("max_batch_size"), "HIVEMIND_MAX_BATCH_SIZE");
  EXPECT_EQ(env_name_for_flag("max-batch-size"), "HIVEMIND_MAX_BATCH_SIZE");
  EXPECT_EQ(env_name_for_flag("--initial_peers"), "HIVEMIND_INITIAL_PEERS");
}

TEST(EnvTest, TypedReadsValidate) {
  ScopedEnv env;
  env.set("HIVEMIND_TEST_INT", " 42 ");
  env.set("HIVEMIND_TEST_BAD_INT", "42x");
  env.set("HIVEMIND_TEST_DOUBLE", "0.25");
  env.set("HIVEMIND_TEST_BOOL", "Yes");
  env.unset("HIVEMIND_TEST_UNSET");

  EXPECT_EQ(**env_int("HIVEMIND_TEST_INT"), 42);
  auto bad = env_int("HIVEMIND_TEST_BAD_INT");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("HIVEMIND_TEST_BAD_INT"), std::string::npos);
  EXPECT_DOUBLE_EQ(**env_double("HIVEMIND_TEST_DOUBLE"), 0.25);
  EXPECT_TRUE(**env_bool("HIVEMIND_TEST_BOOL"));
  EXPECT_FALSE(env_int("HIVEMIND_TEST_UNSET")->has_value());
}

TEST(EnvTest, ParseRejectsGarbage) {
  EXPECT_FALSE(parse_int("").is_ok());
  EXPECT_FALSE(parse_int("99999999999999999999").is_ok());
  EXPECT_FALSE(parse_double("1.5.2").is_ok());
  EXPECT_FALSE(parse_bool("maybe").is_ok());
  EXPECT_EQ(*parse_int("-7"), -7);
}

TEST(LaunchInfoTest, NotLaunchedByDefault) {
  ScopedEnv env;
  clear_launchers(env);
  auto info = read_launch_info();
  ASSERT_TRUE(info.is_ok());
  EXPECT_FALSE(info->launched());
  EXPECT_EQ(info->rank, 0);
  EXPECT_EQ(info->world_size, 1);
}

TEST(LaunchInfoTest, ReadsOpenMpi) {
  ScopedEnv env;
  clear_launchers(env);
  env.set("OMPI_COMM_WORLD_RANK", "3");
  env.set("OMPI_COMM_WORLD_SIZE", "4");
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
  env.set("OMPI_COMM_WORLD_LOCAL_SIZE", "2");
  // A rank within the node, not the node index: must not be taken as the node rank.
  env.set("OMPI_COMM_WORLD_NODE_RANK", "0");
  auto info = read_launch_info();
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_EQ(info->source, "openmpi");
  EXPECT_EQ(info->rank, 3);
  EXPECT_EQ(info->world_size, 4);
  EXPECT_EQ(info->local_rank, 1);
  EXPECT_EQ(info->node_rank, 1);
}

TEST(LaunchInfoTest, ReadsSlurmStepSizeBeforeJobSize) {
  ScopedEnv env;
  clear_launchers(env);
  env.set("SLURM_PROCID", "2");
  env.set("SLURM_NTASKS", "8");
  env.set("SLURM_STEP_NUM_TASKS", "4");
  env.set("SLURM_LOCALID", "0");
  env.set("SLURM_NODEID", "2");
  auto info = read_launch_info();
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->source, "slurm");
  EXPECT_EQ(info->world_size, 4);
  EXPECT_EQ(info->node_rank, 2);
}

TEST(LaunchInfoTest, OwnVariablesWinOverLauncher) {
  ScopedEnv env;
  clear_launchers(env);
  env.set("SLURM_PROCID", "2");
  env.set("SLURM_NTASKS", "4");
  env.set("HIVEMIND_RANK", "0");
  env.set("HIVEMIND_WORLD_SIZE", "2");
  auto info = read_launch_info();
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->source, "hivemind");
  EXPECT_EQ(info->rank, 0);
  EXPECT_EQ(info->world_size, 2);
}

TEST(LaunchInfoTest, RankOutsideWorldIsAnError) {
  ScopedEnv env;
  clear_launchers(env);
  env.set("HIVEMIND_RANK", "4");
  env.set("HIVEMIND_WORLD_SIZE", "4");
  EXPECT_EQ(read_launch_info().status().code(), StatusCode::kInvalidArgument);
  env.set("HIVEMIND_RANK", "-1");
  EXPECT_EQ(read_launch_info().status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hivemind
