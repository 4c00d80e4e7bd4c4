// Averagers in one process, over real loopback transports and DHT nodes, with the test-only
// BoardBackend as their data plane: how groups form (DHT and launcher), what a round reports, and
// the failures the control plane owns (late joins, a leader gone, mismatched tensors, close).
#include <algorithm>
#include <filesystem>
#include <functional>
#include <future>
#include <latch>
#include <numeric>

#include <gtest/gtest.h>
#include <unistd.h>

#include <hivemind/averaging/averager.h>
#include <hivemind/dht/dht.h>

#include "board_backend.h"

namespace hivemind::averaging {
namespace {

using testing::Board;
using testing::BoardBackend;

constexpr auto kRoundTimeout = std::chrono::seconds(20);

// One member: its tensors, its backend and its averager.
struct Member {
  std::vector<float> a, b;
  std::shared_ptr<BoardBackend> backend;
  std::unique_ptr<Averager> averager;

  std::vector<TensorRef> refs() {
    return {TensorRef{a.data(), a.size()}, TensorRef{b.data(), b.size()}};
  }
};

class AveragerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/averager-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    for (auto& m : members_)
      m->averager.reset();
    dhts_.clear();
    std::filesystem::remove_all(dir_);
  }

  dht::Dht* new_dht() {
    dht::DhtOptions options;
    if (!dhts_.empty()) options.initial_peers = {dhts_.front()->address()};
    auto started = dht::Dht::start(options);
    EXPECT_TRUE(started.is_ok()) << started.status().to_string();
    dhts_.push_back(std::move(started).value());
    return dhts_.back().get();
  }

  AveragerOptions dht_options() {
    AveragerOptions options;
    options.key = "test.dense";
    options.dht = new_dht();
    options.round_timeout = kRoundTimeout;
    options.gather_window = std::chrono::seconds(5);
    return options;
  }

  AveragerOptions launcher_options(int rank, int size) {
    AveragerOptions options;
    options.key = "test.dense";
    options.launcher = LauncherGroupOptions{rank, size, dir_ + "/leader"};
    options.round_timeout = kRoundTimeout;
    options.gather_window = std::chrono::seconds(5);
    return options;
  }

  // A member whose tensors hold `base + i` (7 and 1 elements: odd sizes).
  Member& add(AveragerOptions options, float base, size_t elements = 7) {
    auto m = std::make_unique<Member>();
    m->a.resize(elements);
    for (size_t i = 0; i < elements; ++i)
      m->a[i] = base + static_cast<float>(i);
    m->b = {base * 2};
    m->backend = std::make_shared<BoardBackend>(board_);
    options.backends = {m->backend};
    auto created = Averager::create(m->refs(), std::move(options));
    EXPECT_TRUE(created.is_ok()) << created.status().to_string();
    if (created.is_ok()) m->averager = std::move(created).value();
    members_.push_back(std::move(m));
    return *members_.back();
  }

  std::vector<RoundReport> step_all(const std::vector<Member*>& who) {
    std::vector<std::future<RoundReport>> futures;
    for (auto* m : who)
      futures.push_back(m->averager->step_async());
    std::vector<RoundReport> reports;
    for (auto& f : futures)
      reports.push_back(f.get());
    return reports;
  }

  std::vector<Member*> all() {
    std::vector<Member*> result;
    for (auto& m : members_)
      result.push_back(m.get());
    return result;
  }

  // Every member, smallest endpoint first (the DHT leader's order).
  std::vector<Member*> all_by_endpoint() {
    std::vector<Member*> result = all();
    std::sort(result.begin(), result.end(), [](Member* x, Member* y) {
      return x->averager->endpoint() < y->averager->endpoint();
    });
    return result;
  }

  // Every report succeeded with exactly `who` as members, in that order (the leader first).
  void expect_rounds_of(const std::vector<RoundReport>& reports, const std::vector<Member*>& who) {
    std::vector<std::string> endpoints;
    for (auto* m : who)
      endpoints.push_back(m->averager->endpoint());
    for (const auto& report : reports) {
      EXPECT_TRUE(report.ok) << report.failure;
      EXPECT_EQ(report.members, endpoints);
    }
  }

  // Every member's tensors hold the mean of the bases given.
  void expect_mean_of(const std::vector<Member*>& who, const std::vector<float>& bases) {
    const double mean = std::accumulate(bases.begin(), bases.end(), 0.0) / bases.size();
    for (auto* m : who) {
      for (size_t i = 0; i < m->a.size(); ++i)
        EXPECT_NEAR(m->a[i], mean + static_cast<double>(i), 1e-5);
      EXPECT_NEAR(m->b[0], mean * 2, 1e-5);
    }
  }

  // Two launcher members that prefer an "nccl" backend made by `make_nccl(rank)`, with the board as
  // their transport: the NCCL round must fail, every member end on the transport with `reason` in
  // its one fallback, and both hold the mean.
  void expect_transport_fallback(const std::function<std::shared_ptr<BoardBackend>(int)>& make_nccl,
                                 const std::function<void(AveragerOptions&)>& adjust,
                                 std::string_view reason) {
    for (int rank = 0; rank < 2; ++rank) {
      auto m = std::make_unique<Member>();
      m->a = {static_cast<float>(rank)};
      m->b = {static_cast<float>(rank) * 2};
      m->backend = std::make_shared<BoardBackend>(board_);
      auto nccl = make_nccl(rank);
      nccl->device_id = "GPU-" + std::to_string(rank);
      AveragerOptions options = launcher_options(rank, 2);
      adjust(options);
      options.backends = {nccl, m->backend};
      auto created = Averager::create(m->refs(), std::move(options));
      ASSERT_TRUE(created.is_ok()) << created.status().to_string();
      m->averager = std::move(created).value();
      members_.push_back(std::move(m));
    }
    auto reports = step_all(all());
    for (const auto& report : reports) {
      EXPECT_TRUE(report.ok) << report.failure;
      EXPECT_EQ(report.backend, "transport");
      ASSERT_EQ(report.fallbacks.size(), 1u);
      EXPECT_NE(report.fallbacks[0].find(reason), std::string::npos) << report.fallbacks[0];
    }
    EXPECT_EQ(members_[0]->a[0], 0.5f);
    EXPECT_EQ(members_[1]->b[0], 1.0f);
  }

  std::string dir_;
  std::shared_ptr<Board> board_ = std::make_shared<Board>();
  std::vector<std::unique_ptr<dht::Dht>> dhts_;
  std::vector<std::unique_ptr<Member>> members_;
};

TEST_F(AveragerTest, AGroupOfOneIsANoOpRound) {
  Member& m = add(dht_options(), 1);
  RoundReport report = m.averager->step();
  EXPECT_TRUE(report.ok) << report.failure;
  EXPECT_EQ(report.members, std::vector<std::string>{m.averager->endpoint()});
  EXPECT_EQ(report.backend, "transport");
  EXPECT_TRUE(m.backend->groups().empty());  // no data moved
  expect_mean_of({&m}, {1});
  EXPECT_NE(describe(report).find("ok: 1 member"), std::string::npos) << describe(report);
}

TEST_F(AveragerTest, ThreeMembersThroughTheDhtAverageExactly) {
  for (float base : {1.0f, 10.0f, 100.0f})
    add(dht_options(), base);
  auto reports = step_all(all());
  std::vector<std::string> endpoints;
  for (auto* m : all())
    endpoints.push_back(m->averager->endpoint());
  std::sort(endpoints.begin(), endpoints.end());
  for (const auto& report : reports) {
    EXPECT_TRUE(report.ok) << report.failure;
    EXPECT_EQ(report.members, endpoints);  // the smallest endpoint leads, the rest by endpoint
    EXPECT_EQ(report.round, reports.front().round);
    EXPECT_EQ(report.backend, "transport");
  }
  expect_mean_of(all(), {1, 10, 100});
  // Every member got the same group, with itself at its own index and the leader's setup bytes.
  for (auto* m : all()) {
    auto groups = m->backend->groups();
    ASSERT_EQ(groups.size(), 1u);
    EXPECT_EQ(groups[0].members[groups[0].self].endpoint, m->averager->endpoint());
    EXPECT_EQ(groups[0].backend_setup, std::vector<uint8_t>{3});
  }
}

TEST_F(AveragerTest, ThreeMembersFromTheLauncherAverageExactly) {
  for (int rank = 0; rank < 3; ++rank)
    add(launcher_options(rank, 3), static_cast<float>(rank + 1));
  auto reports = step_all(all());
  for (const auto& report : reports) {
    EXPECT_TRUE(report.ok) << report.failure;
    ASSERT_EQ(report.members.size(), 3u);
    EXPECT_EQ(report.members[0], members_[0]->averager->endpoint());  // rank 0 leads
  }
  expect_mean_of(all(), {1, 2, 3});
  // A second round: the mean of equal tensors is the same tensors.
  reports = step_all(all());
  for (const auto& report : reports)
    EXPECT_TRUE(report.ok) << report.failure;
  EXPECT_GT(reports[0].round, 1u);
  expect_mean_of(all(), {1, 2, 3});
}

TEST_F(AveragerTest, MismatchedTensorsAreRefusedWithAnError) {
  AveragerOptions options = launcher_options(0, 2);
  options.gather_window = std::chrono::seconds(1);  // the refused member is waited for until then
  Member& leader = add(options, 1, 7);
  Member& other = add(launcher_options(1, 2), 2, 8);
  auto reports = step_all(all());
  EXPECT_FALSE(reports[1].ok);
  EXPECT_NE(reports[1].failure.find("tensor 0 has 8 float32 elements here but 7 float32 at the "
                                    "leader"),
            std::string::npos)
      << reports[1].failure;
  // The leader's round goes on without the member it refused.
  EXPECT_TRUE(reports[0].ok) << reports[0].failure;
  EXPECT_EQ(reports[0].members.size(), 1u);
  expect_mean_of({&leader}, {1});
  EXPECT_EQ(other.a.size(), 8u);
  EXPECT_EQ(other.a[0], 2.0f);  // untouched
}

TEST_F(AveragerTest, CreateRefusesBadOptionsAndTensorsNamingTheProblem) {
  std::vector<float> data(4, 1.0f);
  std::vector<TensorRef> tensors = {TensorRef{data.data(), data.size()}};
  auto error_of = [&](AveragerOptions options, std::vector<TensorRef> t) {
    options.backends = {std::make_shared<BoardBackend>(board_)};
    auto created = Averager::create(std::move(t), std::move(options));
    EXPECT_FALSE(created.is_ok());
    return created.is_ok() ? std::string() : created.status().message();
  };
  AveragerOptions options = launcher_options(0, 1);
  options.key = "";
  EXPECT_NE(error_of(options, tensors).find("key is empty"), std::string::npos);
  options = launcher_options(0, 1);
  options.key = std::string(81, 'k');
  EXPECT_NE(error_of(options, tensors).find("more than 80"), std::string::npos);
  options = launcher_options(0, 1);
  options.dht = new_dht();
  EXPECT_NE(error_of(options, tensors).find("exactly one membership"), std::string::npos);
  options = launcher_options(0, 1);
  options.gather_window = options.round_timeout;
  EXPECT_NE(error_of(options, tensors).find("gather_window"), std::string::npos);
  options = launcher_options(2, 2);
  EXPECT_NE(error_of(options, tensors).find("rank 2 is not within size 2"), std::string::npos);
  std::vector<int32_t> ints(4);
  EXPECT_NE(
      error_of(launcher_options(0, 1), {TensorRef{ints.data(), ints.size(), quant::DType::kInt32}})
          .find("tensor 0 has a int32 dtype"),
      std::string::npos);
  EXPECT_NE(error_of(launcher_options(0, 1), {}).find("at least one tensor"), std::string::npos);
}

TEST_F(AveragerTest, AMemberJoiningDuringARoundTakesPartFromTheNextRound) {
  AveragerOptions options = launcher_options(0, 3);
  options.gather_window = std::chrono::seconds(1);  // the third member is not there yet
  Member& a = add(options, 1);
  Member& b = add(launcher_options(1, 3), 3);
  // Hold the leader inside round 1 until the late member has been refused.
  std::promise<void> entered, release;
  auto released = release.get_future().share();
  a.backend->in_round = [&, released](const Group& group) {
    if (group.round == 1) {
      entered.set_value();
      released.wait();
    }
  };
  auto a_round = a.averager->step_async();
  auto b_round = b.averager->step_async();
  ASSERT_EQ(entered.get_future().wait_for(kRoundTimeout), std::future_status::ready);

  Member& c = add(launcher_options(2, 3), 5);
  RoundReport late = c.averager->step();
  EXPECT_FALSE(late.ok);
  EXPECT_NE(late.failure.find("joined late"), std::string::npos) << late.failure;
  EXPECT_NE(late.failure.find("next round"), std::string::npos) << late.failure;
  EXPECT_EQ(c.a[0], 5.0f);  // a failed round leaves the tensors as they were
  release.set_value();
  EXPECT_TRUE(a_round.get().ok);
  RoundReport b_report = b_round.get();
  EXPECT_TRUE(b_report.ok) << b_report.failure;
  EXPECT_EQ(b_report.members.size(), 2u);
  expect_mean_of({&a, &b}, {1, 3});

  auto reports = step_all({&a, &b, &c});
  for (const auto& report : reports) {
    EXPECT_TRUE(report.ok) << report.failure;
    EXPECT_EQ(report.members.size(), 3u);
  }
  expect_mean_of({&a, &b, &c}, {2, 2, 5});
}

TEST_F(AveragerTest, ALeaderThatIsGoneIsSkippedInTheSameRound) {
  for (float base : {1.0f, 2.0f, 4.0f})
    add(dht_options(), base);
  auto by_endpoint = all_by_endpoint();
  // The would-be leader closes (its rpc server with it); its DHT declaration is still live.
  by_endpoint[0]->averager->close();
  auto reports = step_all({by_endpoint[1], by_endpoint[2]});
  expect_rounds_of(reports, {by_endpoint[1], by_endpoint[2]});
  EXPECT_EQ(by_endpoint[1]->a, by_endpoint[2]->a);
  EXPECT_EQ(by_endpoint[1]->b, by_endpoint[2]->b);
}

// A candidate whose process is gone (here: its averager closed, its DHT declaration still live)
// is not waited for: the leader probes the candidates that have not joined and forms the round as
// soon as the gone one is found out. The gather window is ten minutes, so a leader that waited for
// it would not finish within this test's timeout.
TEST_F(AveragerTest, ACandidateThatIsGoneIsNotWaitedFor) {
  for (float base : {1.0f, 2.0f, 4.0f}) {
    AveragerOptions options = dht_options();
    options.gather_window = std::chrono::minutes(10);
    options.round_timeout = std::chrono::minutes(20);
    add(std::move(options), base);
  }
  auto by_endpoint = all_by_endpoint();
  by_endpoint[2]->averager->close();  // not the leader: the smallest endpoint leads
  auto reports = step_all({by_endpoint[0], by_endpoint[1]});
  expect_rounds_of(reports, {by_endpoint[0], by_endpoint[1]});
  EXPECT_EQ(by_endpoint[0]->a, by_endpoint[1]->a);
}

// A member that led a round nobody joined passes itself over as the leader; the other member picks
// it all the same (it is the smaller endpoint). Each then follows the other: the pair must resolve
// that into one group instead of both waiting out their patience and averaging alone.
TEST_F(AveragerTest, TwoMembersThatPickEachOtherAverageTogether) {
  AveragerOptions first = dht_options();
  first.gather_window = std::chrono::seconds(1);
  AveragerOptions second = dht_options();
  second.gather_window = std::chrono::seconds(1);
  Member& x = add(std::move(first), 1);
  Member& y = add(std::move(second), 3);
  Member& smaller = x.averager->endpoint() < y.averager->endpoint() ? x : y;
  Member& larger = &smaller == &x ? y : x;

  // The smaller leads alone while the larger is declared but not averaging: it passes itself over.
  RoundReport alone = smaller.averager->step();
  ASSERT_TRUE(alone.ok) << alone.failure;
  ASSERT_EQ(alone.members.size(), 1u);

  for (int round = 0; round < 2; ++round) {
    expect_rounds_of(step_all({&smaller, &larger}), {&smaller, &larger});
  }
  EXPECT_EQ(x.a, y.a);
  EXPECT_EQ(x.b, y.b);
}

TEST_F(AveragerTest, AFailedNcclRoundFallsBackToTheTransport) {
  expect_transport_fallback(
      [&](int) {
        auto nccl = std::make_shared<BoardBackend>(board_, "nccl");
        nccl->fail_with = internal_error("ncclCommInitRank: unhandled system error");
        return nccl;
      },
      [](AveragerOptions&) {}, "nccl: Internal: ncclCommInitRank");
}

TEST_F(AveragerTest, AStalledNcclRoundLeavesTheTransportTimeToRetry) {
  // Each member's "nccl" posts to a board of its own, so no NCCL round can complete: both stall
  // until the part of the deadline NCCL gets, and the transport retry must still fit.
  expect_transport_fallback(
      [](int) { return std::make_shared<BoardBackend>(std::make_shared<Board>(), "nccl"); },
      [](AveragerOptions& options) {
        options.round_timeout = std::chrono::seconds(4);
        options.gather_window = std::chrono::seconds(1);
      },
      "incomplete at the deadline");
}

TEST_F(AveragerTest, CloseCompletesPendingStepsOnceAndIsIdempotent) {
  AveragerOptions options = launcher_options(0, 2);  // rank 1 never comes
  options.gather_window = std::chrono::seconds(15);
  Member& m = add(options, 1);
  auto running = m.averager->step_async();
  auto queued = m.averager->step_async();
  m.averager->close();
  RoundReport first = running.get();
  RoundReport second = queued.get();
  EXPECT_FALSE(first.ok);
  EXPECT_NE(first.failure.find("closed"), std::string::npos) << first.failure;
  EXPECT_FALSE(second.ok);
  EXPECT_EQ(second.failure, "averager closed");
  m.averager->close();
  RoundReport after = m.averager->step();
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(after.failure, "averager closed");
  EXPECT_EQ(m.a[0], 1.0f);
}

}  // namespace
}  // namespace hivemind::averaging
