#include <random>
#include <set>

#include <gtest/gtest.h>

#include <hivemind/client/beam_search.h>
#include <hivemind/client/expert_uid.h>

#include "fake_swarm.h"

namespace hivemind::client {
namespace {

using testing::FakeDirectory;
using testing::oracle_best_experts;

std::map<std::string, std::string> random_live_grid(const std::string& prefix,
                                                    const std::vector<int64_t>& grid,
                                                    double density, std::mt19937& rng) {
  std::map<std::string, std::string> live;
  std::bernoulli_distribution alive(density);
  std::vector<int32_t> coords(grid.size(), 0);
  while (true) {
    if (alive(rng))
      live[make_expert_uid(prefix, coords)] =
          "tcp://127.0.0.1:" + std::to_string(24000 + live.size());
    size_t d = grid.size();
    while (d > 0) {
      --d;
      if (++coords[d] < grid[d]) break;
      coords[d] = 0;
      if (d == 0) return live;
    }
  }
}

GridScores random_scores(const std::vector<int64_t>& grid, int64_t batch, bool ties,
                         std::mt19937& rng) {
  GridScores s;
  s.batch_size = batch;
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> small(-2, 2);  // many exact ties
  for (int64_t g : grid) {
    std::vector<double> dim(batch * g);
    for (double& v : dim)
      v = ties ? small(rng) : normal(rng);
    s.dims.push_back(std::move(dim));
  }
  return s;
}

std::vector<std::string> uids(const std::vector<ChosenExpert>& experts) {
  std::vector<std::string> out;
  for (const auto& e : experts)
    out.push_back(e.expert.uid);
  return out;
}

TEST(ExpertUid, ParsesAndFormats) {
  const std::vector<int64_t> grid{4, 10};
  EXPECT_EQ(normalize_uid_prefix("expert"), "expert.");
  EXPECT_EQ(normalize_uid_prefix("expert."), "expert.");
  const std::vector<int32_t> c{3, 7};
  EXPECT_EQ(make_expert_uid("expert.", c), "expert.3.7");
  EXPECT_EQ(parse_expert_uid("expert.", "expert.3.7", grid), (std::vector<int32_t>{3, 7}));
  EXPECT_FALSE(parse_expert_uid("expert.", "expert.4.7", grid));    // outside the grid
  EXPECT_FALSE(parse_expert_uid("expert.", "expert.3", grid));      // too few coordinates
  EXPECT_FALSE(parse_expert_uid("expert.", "expert.3.7.1", grid));  // too many
  EXPECT_FALSE(parse_expert_uid("expert.", "expert.3.-1", grid));
  EXPECT_FALSE(parse_expert_uid("expert.", "expert.3..", grid));
  EXPECT_FALSE(parse_expert_uid("expert.", "other.3.7", grid));
  EXPECT_FALSE(parse_expert_uid("expert.", "expert.3.x", grid));
}

struct Case {
  std::vector<int64_t> grid;
  double density;
  int64_t k;
  bool ties;
};

// Many grids, densities, k and tie-heavy scores in one test: each CTest case is a process that
// loads LibTorch, so one case per configuration would cost more than the searches themselves.
TEST(BeamSearch, EqualsBruteForceWithOneRoundPerDimension) {
  const std::vector<Case> cases{
      {{16}, 0.5, 3, false},        {{16}, 0.05, 4, false},    {{6, 7}, 1.0, 4, false},
      {{6, 7}, 0.3, 4, false},      {{6, 7}, 0.05, 2, false},  {{6, 7}, 0.3, 1, true},
      {{4, 3, 5}, 0.4, 5, false},   {{4, 3, 5}, 0.1, 3, true}, {{5, 1, 4, 3}, 0.3, 4, false},
      {{3, 4, 3, 2}, 0.6, 8, true}, {{6, 7}, 0.5, 100, false}, {{2, 30}, 0.2, 6, false}};
  const std::string prefix = "ffn.";
  for (const Case& c : cases) {
    for (uint32_t seed = 1; seed <= 12; ++seed) {
      SCOPED_TRACE(::testing::Message()
                   << "grid of " << c.grid.size() << " dims, first " << c.grid[0] << ", density "
                   << c.density << ", k " << c.k << ", seed " << seed);
      std::mt19937 rng(seed);
      auto live = random_live_grid(prefix, c.grid, c.density, rng);
      auto directory = std::make_shared<FakeDirectory>(live);
      MoEBeamSearcher searcher(directory, "ffn", c.grid);
      const GridScores scores = random_scores(c.grid, /*batch=*/9, c.ties, rng);
      BeamSearchStats stats;
      auto found = searcher.batch_find_best_experts(scores, c.k,
                                                    Deadline::after(Milliseconds{10'000}), &stats);
      ASSERT_TRUE(found.is_ok()) << found.status().to_string();
      const auto expected = oracle_best_experts(live, prefix, c.grid, scores, c.k);
      ASSERT_EQ(found->size(), expected.size());
      for (size_t i = 0; i < expected.size(); ++i) {
        ASSERT_EQ(uids((*found)[i]), uids(expected[i])) << "sample " << i;
        for (size_t j = 0; j < expected[i].size(); ++j) {
          EXPECT_EQ((*found)[i][j].coords, expected[i][j].coords);
          EXPECT_EQ((*found)[i][j].score, expected[i][j].score);
          EXPECT_EQ((*found)[i][j].expert.endpoint, live.at(expected[i][j].expert.uid));
        }
      }
      const size_t max_rounds = c.grid.size() == 1 ? 1 : c.grid.size() - 1;
      EXPECT_LE(directory->calls(), static_cast<int>(max_rounds));
      EXPECT_EQ(stats.prefixes_per_round.size(), static_cast<size_t>(directory->calls()));
      EXPECT_EQ(directory->duplicate_prefixes(), 0);
      // The first round asks every first coordinate once for the whole batch, not once per sample.
      ASSERT_FALSE(stats.prefixes_per_round.empty());
      EXPECT_EQ(stats.prefixes_per_round[0], static_cast<size_t>(c.grid[0]));
    }
  }
}

TEST(BeamSearch, PrunesPrefixesThatCannotReachTheTopK) {
  const std::vector<int64_t> grid{16, 16, 16};
  std::mt19937 rng(7);
  auto live = random_live_grid("e.", grid, 0.3, rng);
  std::set<std::string> live_depth2;
  for (const auto& [uid, endpoint] : live)
    live_depth2.insert(uid.substr(0, uid.rfind('.') + 1));
  auto directory = std::make_shared<FakeDirectory>(live);
  MoEBeamSearcher searcher(directory, "e.", grid);
  const GridScores scores = random_scores(grid, /*batch=*/4, false, rng);
  BeamSearchStats stats;
  auto found =
      searcher.batch_find_best_experts(scores, 2, Deadline::after(Milliseconds{10'000}), &stats);
  ASSERT_TRUE(found.is_ok());
  EXPECT_EQ(uids((*found)[3]), uids(oracle_best_experts(live, "e.", grid, scores, 2)[3]));
  ASSERT_EQ(stats.prefixes_per_round.size(), 2u);
  // Four samples' second rounds together ask for fewer prefixes than one exhaustive search would.
  EXPECT_LT(stats.prefixes_per_round[1], live_depth2.size());
}

TEST(BeamSearch, EmptySwarmFindsNothing) {
  auto directory = std::make_shared<FakeDirectory>(std::map<std::string, std::string>{});
  MoEBeamSearcher searcher(directory, "expert.", {4, 4});
  std::mt19937 rng(3);
  auto found = searcher.batch_find_best_experts(random_scores({4, 4}, 3, false, rng), 2,
                                                Deadline::after(Milliseconds{1000}));
  ASSERT_TRUE(found.is_ok());
  for (const auto& sample : *found)
    EXPECT_TRUE(sample.empty());
  EXPECT_EQ(directory->calls(), 1);  // nothing live under any first coordinate: no second round
}

TEST(BeamSearch, IgnoresRecordsOutsideTheGrid) {
  // Another layer's experts under the same prefix, with a larger grid: never chosen.
  std::map<std::string, std::string> live{
      {"e.0.1", "a"}, {"e.0.9", "b"}, {"e.1.0.3", "c"}, {"e.7.0", "d"}};
  auto directory = std::make_shared<FakeDirectory>(live);
  MoEBeamSearcher searcher(directory, "e", {2, 2});
  GridScores s{1, {{0.0, 5.0}, {1.0, 0.0}}};
  auto found = searcher.batch_find_best_experts(s, 4, Deadline::after(Milliseconds{1000}));
  ASSERT_TRUE(found.is_ok());
  EXPECT_EQ(uids((*found)[0]), std::vector<std::string>{"e.0.1"});
}

TEST(BeamSearch, NanScoresRankLast) {
  std::map<std::string, std::string> live{{"e.0", "a"}, {"e.1", "b"}, {"e.2", "c"}};
  MoEBeamSearcher searcher(std::make_shared<FakeDirectory>(live), "e.", {3});
  GridScores s{1, {{std::nan(""), 1.0, -std::numeric_limits<double>::infinity()}}};
  auto found = searcher.batch_find_best_experts(s, 3, Deadline::after(Milliseconds{1000}));
  ASSERT_TRUE(found.is_ok());
  EXPECT_EQ(uids((*found)[0]), (std::vector<std::string>{"e.1", "e.0", "e.2"}));
}

TEST(BeamSearch, DirectoryErrorFailsTheSearch) {
  auto directory =
      std::make_shared<FakeDirectory>(std::map<std::string, std::string>{{"e.0.0", "a"}});
  directory->set_error(timeout_error("dht lookup exceeded its deadline"));
  MoEBeamSearcher searcher(directory, "e.", {2, 2});
  GridScores s{1, {{0.0, 1.0}, {0.0, 1.0}}};
  auto found = searcher.batch_find_best_experts(s, 1, Deadline::after(Milliseconds{1000}));
  ASSERT_FALSE(found.is_ok());
  EXPECT_EQ(found.status().code(), StatusCode::kTimeout);
  EXPECT_NE(found.status().message().find("dht lookup"), std::string::npos);
}

TEST(BeamSearch, RejectsBadArguments) {
  auto directory = std::make_shared<FakeDirectory>(std::map<std::string, std::string>{});
  EXPECT_THROW(MoEBeamSearcher(directory, "e.", {}), std::invalid_argument);
  EXPECT_THROW(MoEBeamSearcher(directory, "e.", {3, 0}), std::invalid_argument);
  MoEBeamSearcher searcher(directory, "e.", {2, 2});
  GridScores wrong{1, {{0.0, 1.0}}};
  EXPECT_FALSE(
      searcher.batch_find_best_experts(wrong, 1, Deadline::after(Milliseconds{10})).is_ok());
  GridScores right{1, {{0.0, 1.0}, {0.0, 1.0}}};
  EXPECT_FALSE(
      searcher.batch_find_best_experts(right, 0, Deadline::after(Milliseconds{10})).is_ok());
}

TEST(BeamSearch, FromTensors) {
  std::map<std::string, std::string> live{{"e.0.1", "a"}, {"e.1.0", "b"}};
  MoEBeamSearcher searcher(std::make_shared<FakeDirectory>(live), "e.", {2, 2});
  const std::vector<torch::Tensor> scores{torch::tensor({{0.f, 3.f}, {2.f, 0.f}}),
                                          torch::tensor({{0.f, 1.f}, {0.f, 5.f}})};
  auto found = searcher.batch_find_best_experts(scores, 1, Deadline::after(Milliseconds{1000}));
  ASSERT_TRUE(found.is_ok());
  EXPECT_EQ(uids((*found)[0]), std::vector<std::string>{"e.1.0"});  // 3 + 0 beats 0 + 1
  EXPECT_EQ(uids((*found)[1]), std::vector<std::string>{"e.0.1"});  // 2 + 5 beats 0 + 0
}

}  // namespace
}  // namespace hivemind::client
