// In-process stand-ins for the network: a directory over a set of live uids and an ExpertCaller
// that runs local torch modules, inline or on a small thread pool, with failures, NaNs, hangs and
// held answers injected per expert. No sleeps: a held answer is released explicitly by the test.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <torch/nn.h>
#include <torch/types.h>

#include <hivemind/client/beam_search.h>
#include <hivemind/client/expert_caller.h>
#include <hivemind/client/expert_directory.h>
#include <hivemind/client/remote_moe.h>

namespace hivemind::client::testing {

class FakeDirectory final : public ExpertDirectory {
 public:
  explicit FakeDirectory(std::map<std::string, std::string> live) : live_(std::move(live)) {}

  Result<std::vector<std::map<int, ExpertAddress>>> get_active_successors(
      std::span<const std::string> prefixes, Deadline deadline) override;

  void set_error(Status error) { error_ = std::move(error); }
  int calls() const { return calls_; }
  int duplicate_prefixes() const { return duplicates_; }
  const std::map<std::string, std::string>& live() const { return live_; }

 private:
  std::map<std::string, std::string> live_;  // uid -> endpoint
  Status error_;
  int calls_ = 0;
  int duplicates_ = 0;
};

// Brute force: every live expert of the grid, scored left to right in double, ranked by (score
// desc, uid asc).
std::vector<std::vector<ChosenExpert>> oracle_best_experts(
    const std::map<std::string, std::string>& live, const std::string& prefix,
    const std::vector<int64_t>& grid, const GridScores& scores, int64_t k);

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  void post(std::function<void()> job);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

enum class Behavior {
  kAnswer,  // run the module and answer
  kFail,    // answer an error
  kNaN,     // answer a tensor full of NaN
  kWrongShape,
  kHold,  // keep the callback until release_held() (a hang when never released)
};

class FakeCaller final : public ExpertCaller {
 public:
  using Module = std::function<torch::Tensor(const torch::Tensor&)>;
  // An expert of several inputs; its backward answers one gradient per input.
  using MultiInputModule = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;
  // An expert of several outputs; its backward takes one gradient per output.
  using MultiOutputModule =
      std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

  // threads = 0: answers run inline on the calling thread.
  explicit FakeCaller(int threads = 0);
  ~FakeCaller() override;

  void add_expert(const std::string& uid, Module module);
  void add_multi_input_expert(const std::string& uid, MultiInputModule module);
  void add_multi_output_expert(const std::string& uid, MultiOutputModule module);
  void set_forward(const std::string& uid, Behavior b);
  void set_backward(const std::string& uid, Behavior b);
  // What info() answers for `uid` (kAnswer: the description given here). An expert without one
  // answers like the base ExpertCaller: kUnsupported.
  void describe(const std::string& uid, protocol::ExpertInfo info);
  void set_info(const std::string& uid, Behavior b);

  void forward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs, Deadline deadline,
               ExpertCallback done) override;
  void backward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                std::vector<torch::Tensor> grad_outputs, Deadline deadline,
                ExpertCallback done) override;
  void info(const ExpertAddress& expert, Deadline deadline, InfoCallback done) override;

  // Completes every held call with the module's real answer (a late answer).
  void release_held();

  struct Call {
    std::string uid;
    int64_t batch;
    bool backward;
  };
  std::vector<Call> calls() const;
  int info_calls() const;

 private:
  void run(std::function<void()> job);
  Behavior behavior(const std::string& uid, bool backward) const;

  mutable std::mutex mu_;
  std::map<std::string, MultiOutputModule> modules_;
  std::map<std::string, Behavior> forward_behavior_, backward_behavior_, info_behavior_;
  std::map<std::string, protocol::ExpertInfo> descriptions_;
  int info_calls_ = 0;
  std::vector<std::function<void()>> held_;
  std::vector<Call> calls_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace hivemind::client::testing

namespace hivemind::client::testing {

// A tiny feed-forward expert with seeded weights.
torch::nn::Sequential make_ffn(int64_t hidden, uint64_t seed);

// A grid with a random subset alive, each live expert a seeded ffn served by the FakeCaller.
struct Swarm {
  std::string prefix;
  std::vector<int64_t> grid;
  std::map<std::string, torch::nn::Sequential> experts;
  std::shared_ptr<FakeDirectory> directory;
  std::shared_ptr<FakeCaller> caller;
};

Swarm make_swarm(const std::string& prefix, const std::vector<int64_t>& grid, int64_t hidden,
                 double density, uint32_t seed, int threads);

// hivemind's gating input: inputs with more than two dimensions averaged over the middle ones.
torch::Tensor gating_input(const torch::Tensor& x);

// A RemoteMixtureOfExperts over `swarm`'s grid: its prefix, in_features, k_best, the rest default.
RemoteMixtureOfExpertsOptions moe_options(const Swarm& swarm, int64_t in_features, int64_t k_best);

// One expert's output for one sample in a hand-computed MoE; nullopt: the expert failed, and leaves
// the softmax.
using ExpertOutput =
    std::function<std::optional<torch::Tensor>(int64_t sample, const ChosenExpert& expert)>;

// hivemind's RemoteMixtureOfExperts computed by hand, sample by sample, with autograd: each
// sample's chosen experts that answered, weighted by the softmax of their summed grid logits
// (`grid`: one [batch, grid_size[d]] tensor per dimension); `empty_row` for a sample none answered.
torch::Tensor reference_mixture(const std::vector<torch::Tensor>& grid,
                                const std::vector<std::vector<ChosenExpert>>& chosen,
                                const ExpertOutput& output, const torch::Tensor& empty_row);

}  // namespace hivemind::client::testing
