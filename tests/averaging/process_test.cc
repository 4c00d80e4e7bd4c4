// Averaging groups of real processes (averaging_member, one member each) on loopback: 2, 3 and 5
// members through the DHT and through the launcher, exact means from 1 element to 64 MiB, members
// SIGKILLed and SIGSTOPped mid-round, a member arriving late, and the launcher path under mpirun.
//
// Every member prints a report per round, with the largest relative error of its tensors against
// what the test says they must hold (weights over the members' initial tensors), so an exact mean,
// and tensors left untouched by a failed round, are both checked by the members themselves.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <hivemind/dht/dht.h>
#include <hivemind/harness/child_process.h>

#include "test_env.h"

namespace hivemind::averaging {
namespace {

constexpr int64_t kRoundTimeoutMs = 10000;
constexpr int64_t kGatherWindowMs = 3000;
// How long the test waits for a report: the round's own deadline plus time to start and print.
constexpr auto kReportWait = std::chrono::milliseconds(kRoundTimeoutMs + 20000);

using Weights = std::map<int, double>;

struct Report {
  bool ok = false;
  uint64_t round = 0;
  size_t members = 0;
  double max_rel_err = 1;
  std::string failure;
  std::string line;
};

std::string member_program() {
  return testing::build_dir() + "/tests/averaging_member";
}

class Member {
 public:
  Member(int rank, std::vector<std::string> args, const std::string& log) : rank_(rank) {
    ChildOptions options;
    options.argv = {member_program(),
                    "--rank",
                    std::to_string(rank),
                    "--round-timeout-ms",
                    std::to_string(kRoundTimeoutMs),
                    "--gather-window-ms",
                    std::to_string(kGatherWindowMs)};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.stdout_to = ChildOutput::kPipe;
    options.stderr_to = ChildOutput::kFile;
    options.output_file = log;
    auto spawned = ChildProcess::spawn(std::move(options));
    EXPECT_TRUE(spawned.is_ok()) << spawned.status().to_string();
    if (spawned.is_ok()) process_ = std::move(*spawned);
  }

  // Waits for "ready <endpoint>".
  bool ready() {
    auto line = process_.read_line_containing("ready ", Deadline::after(std::chrono::seconds(60)));
    EXPECT_TRUE(line.is_ok()) << "rank " << rank_ << ": " << line.status().to_string();
    if (!line.is_ok()) return false;
    endpoint_ = line->substr(6);
    return true;
  }

  void send(const std::string& line) { ASSERT_TRUE(process_.write(line + "\n").is_ok()); }

  Report report() {
    Report r;
    auto line = process_.read_line_containing("report ", Deadline::after(kReportWait));
    EXPECT_TRUE(line.is_ok()) << "rank " << rank_ << ": " << line.status().to_string();
    if (!line.is_ok()) return r;
    r.line = *line;
    std::istringstream in(line->substr(7));
    std::string item;
    while (in >> item) {
      auto eq = item.find('=');
      std::string name = item.substr(0, eq), value = item.substr(eq + 1);
      if (name == "ok") r.ok = value == "1";
      if (name == "round") r.round = std::stoull(value);
      if (name == "members") r.members = std::stoul(value);
      if (name == "max_rel_err") r.max_rel_err = std::stod(value);
      if (name == "failure") {
        std::string rest;
        std::getline(in, rest);
        r.failure = value + rest;
        break;
      }
    }
    return r;
  }

  // Waits until the member stopped inside its round ("in-round").
  bool in_round() { return wait_for("in-round "); }
  // Waits until the member's backend started a round (it holds the group).
  bool entered_round() { return wait_for("entering-round "); }

  void signal(int sig) { process_.signal(sig); }

 private:
  bool wait_for(std::string_view text) {
    auto line = process_.read_line_containing(text, Deadline::after(std::chrono::seconds(30)));
    EXPECT_TRUE(line.is_ok()) << "rank " << rank_ << ": " << line.status().to_string();
    return line.is_ok();
  }

 public:
  int rank() const { return rank_; }
  const std::string& endpoint() const { return endpoint_; }

 private:
  int rank_;
  ChildProcess process_;
  std::string endpoint_;
};

std::string format_weights(const Weights& weights) {
  std::ostringstream text;
  text.precision(17);
  for (const auto& [rank, w] : weights)
    text << (text.tellp() > 0 ? "," : "") << rank << ":" << w;
  return text.str();
}

class AveragingProcesses : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(member_program())) << member_program();
    // A parameterized test's name ("ExactMean/2") would make a nested folder that TearDown's
    // remove_all leaves behind.
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '.');
    dir_ = ::testing::TempDir() + "/averaging-mp-" + std::to_string(::getpid()) + "-" + name;
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    members_.clear();
    dht_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // Members through the DHT: each joins the test's own node.
  void start_dht_members(int n, size_t elements, int first_rank = 0) {
    if (!dht_) {
      auto started = dht::Dht::start(dht::DhtOptions{});
      ASSERT_TRUE(started.is_ok()) << started.status().to_string();
      dht_ = std::move(started).value();
    }
    for (int rank = first_rank; rank < first_rank + n; ++rank) {
      add(rank, {"--dht-peer", dht_->address(), "--elements", std::to_string(elements)});
    }
  }

  // Members from the launcher: ranks 0..n-1 of n, rank 0 leads.
  void start_launcher_members(int n, size_t elements) {
    for (int rank = 0; rank < n; ++rank) {
      add(rank, {"--size", std::to_string(n), "--bootstrap-file", dir_ + "/leader", "--elements",
                 std::to_string(elements)});
    }
  }

  void add(int rank, std::vector<std::string> args) {
    members_.push_back(std::make_unique<Member>(rank, std::move(args),
                                                dir_ + "/member" + std::to_string(rank) + ".log"));
    weights_[rank] = Weights{{rank, 1.0}};
  }

  void wait_ready() {
    for (auto& m : members_)
      ASSERT_TRUE(m->ready()) << "see " << dir_;
  }

  // One round of `who`: if `succeeds`, every one of them must end ok with exactly them, holding
  // the mean; otherwise every one must end failed with its tensors untouched.
  std::vector<Report> round(const std::vector<Member*>& who, bool succeeds) {
    Weights mean;
    for (auto* m : who) {
      for (const auto& [rank, w] : weights_[m->rank()])
        mean[rank] += w / static_cast<double>(who.size());
    }
    for (auto* m : who)
      m->send("step " + format_weights(succeeds ? mean : weights_[m->rank()]));
    std::vector<Report> reports;
    for (auto* m : who) {
      reports.push_back(m->report());
      const Report& r = reports.back();
      EXPECT_EQ(r.ok, succeeds) << "rank " << m->rank() << ": " << r.line;
      EXPECT_LE(r.max_rel_err, 1e-6) << "rank " << m->rank() << ": " << r.line;
      if (succeeds) {
        EXPECT_EQ(r.members, who.size()) << "rank " << m->rank() << ": " << r.line;
      }
    }
    if (succeeds) {
      for (auto* m : who)
        weights_[m->rank()] = mean;
    }
    return reports;
  }

  std::vector<Member*> all() {
    std::vector<Member*> result;
    for (auto& m : members_)
      result.push_back(m.get());
    return result;
  }
  // The member that leads a DHT round: the smallest endpoint.
  Member* dht_leader(const std::vector<Member*>& who) {
    return *std::min_element(who.begin(), who.end(),
                             [](Member* a, Member* b) { return a->endpoint() < b->endpoint(); });
  }

  // Holds `victim` inside a round every member entered, then sends it `signal` (SIGKILL: dead;
  // SIGSTOP: stalled). The others' round must fail with their tensors unchanged, and the next two
  // rounds must succeed without the victim.
  void signal_mid_round(Member* victim, int signal) {
    std::vector<Member*> survivors;
    for (auto* m : all())
      if (m != victim) survivors.push_back(m);
    victim->send("stall");
    victim->send("step " + format_weights(weights_[victim->rank()]));
    for (auto* m : survivors)
      m->send("step " + format_weights(weights_[m->rank()]));
    // Signalled once every member holds the group (else the others re-form the round without it).
    ASSERT_TRUE(victim->in_round());
    for (auto* m : survivors)
      ASSERT_TRUE(m->entered_round());
    victim->signal(signal);
    for (auto* m : survivors) {
      Report r = m->report();
      EXPECT_FALSE(r.ok) << r.line;
      EXPECT_LE(r.max_rel_err, 1e-6) << "a failed round changed the tensors: " << r.line;
    }
    round(survivors, true);
    round(survivors, true);
  }

  std::string dir_;
  std::unique_ptr<dht::Dht> dht_;
  std::vector<std::unique_ptr<Member>> members_;
  std::map<int, Weights> weights_;
};

class DhtGroupSizes : public AveragingProcesses, public ::testing::WithParamInterface<int> {};
class LauncherGroupSizes : public AveragingProcesses, public ::testing::WithParamInterface<int> {};

// Sizes that do not split evenly over the members: 1 element with 2, 100003 with 3, 12347 with 5.
size_t elements_for(int members) {
  return members == 2 ? 1 : members == 3 ? 100003 : 12347;
}

TEST_P(DhtGroupSizes, ExactMean) {
  start_dht_members(GetParam(), elements_for(GetParam()));
  wait_ready();
  round(all(), true);
  round(all(), true);  // the mean again: every member already holds it
}

TEST_P(LauncherGroupSizes, ExactMean) {
  start_launcher_members(GetParam(), elements_for(GetParam()));
  wait_ready();
  round(all(), true);
}

INSTANTIATE_TEST_SUITE_P(Members, DhtGroupSizes, ::testing::Values(2, 3, 5));
INSTANTIATE_TEST_SUITE_P(Members, LauncherGroupSizes, ::testing::Values(2, 3, 5));

TEST_F(AveragingProcesses, SixtyFourMiBThroughTheLauncher) {
  start_launcher_members(2, size_t{16} << 20);  // 16 Mi fp32 = 64 MiB per member
  wait_ready();
  round(all(), true);
}

TEST_F(AveragingProcesses, ALeaderKilledMidRoundFailsTheRoundAndTheNextFormsWithoutIt) {
  start_dht_members(3, 1001);
  wait_ready();
  round(all(), true);
  // The dead leader's declaration is still in the DHT: the survivors find it gone and skip it.
  signal_mid_round(dht_leader(all()), SIGKILL);
}

TEST_F(AveragingProcesses, AMemberStoppedMidRoundFailsTheRoundAndTheNextFormsWithoutIt) {
  start_dht_members(3, 1001);
  wait_ready();
  round(all(), true);
  Member* leader = dht_leader(all());
  Member* victim = nullptr;
  for (auto* m : all())
    if (m != leader && victim == nullptr) victim = m;
  // The stopped member never sends its part: the others' round ends at its deadline.
  signal_mid_round(victim, SIGSTOP);
}

TEST_F(AveragingProcesses, ALeaderStoppedMidRoundFailsTheRoundAndTheNextFormsWithoutIt) {
  start_dht_members(3, 1001);
  wait_ready();
  round(all(), true);
  // The stopped leader still holds its connections and its declaration: the survivors' joins wait
  // for it two gather windows, then the next candidate leads within the same round.
  signal_mid_round(dht_leader(all()), SIGSTOP);
}

TEST_F(AveragingProcesses, AMemberArrivingLaterTakesPartFromTheNextRound) {
  start_dht_members(2, 999);
  wait_ready();
  round(all(), true);
  start_dht_members(1, 999, 2);
  ASSERT_TRUE(members_.back()->ready());
  round(all(), true);
}

class MpirunGroupSizes : public AveragingProcesses, public ::testing::WithParamInterface<int> {};

std::optional<std::string> find_mpirun() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    auto candidate = std::filesystem::path(dir) / "mpirun";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return std::nullopt;
}

// The launcher path as a job runs it: mpirun sets OMPI_COMM_WORLD_RANK/SIZE, nothing else says
// who is who. Loopback only, as scripts/test-multinode.sh runs OpenMPI.
TEST_P(MpirunGroupSizes, ExactMeanEveryRound) {
  auto mpirun = find_mpirun();
  if (!mpirun) GTEST_SKIP() << "mpirun is not installed: the mpirun launcher path is not tested";
  ChildOptions options;
  options.argv = {*mpirun,
                  "--allow-run-as-root",
                  "--oversubscribe",
                  "--mca",
                  "btl",
                  "self,tcp",
                  "--mca",
                  "btl_tcp_if_include",
                  "lo",
                  "--mca",
                  "oob_tcp_if_include",
                  "lo",
                  "-np",
                  std::to_string(GetParam()),
                  member_program(),
                  "--bootstrap-file",
                  dir_ + "/leader",
                  "--elements",
                  "10007",
                  "--rounds",
                  "2",
                  "--round-timeout-ms",
                  std::to_string(kRoundTimeoutMs),
                  "--gather-window-ms",
                  std::to_string(kGatherWindowMs)};
  options.stdout_to = ChildOutput::kFile;
  options.stderr_to = ChildOutput::kFile;
  options.output_file = dir_ + "/mpirun.log";
  options.pipe_stdin = false;
  auto job = ChildProcess::spawn(std::move(options));
  ASSERT_TRUE(job.is_ok()) << job.status().to_string();
  auto code = job->wait(Deadline::after(std::chrono::seconds(120)));
  ASSERT_TRUE(code.is_ok()) << code.status().to_string();
  std::ifstream log(dir_ + "/mpirun.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_EQ(*code, 0) << text;
  size_t exact = 0;
  for (size_t at = 0; (at = text.find("every round exact", at)) != std::string::npos; ++at)
    ++exact;
  EXPECT_EQ(exact, static_cast<size_t>(GetParam())) << text;
}

INSTANTIATE_TEST_SUITE_P(Members, MpirunGroupSizes, ::testing::Values(2, 3, 5));

}  // namespace
}  // namespace hivemind::averaging
