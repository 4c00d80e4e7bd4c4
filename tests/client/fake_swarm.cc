#include "fake_swarm.h"

#include <algorithm>
#include <random>

#include <torch/autograd.h>
#include <torch/utils.h>

#include <hivemind/client/expert_uid.h>

namespace hivemind::client::testing {

Result<std::vector<std::map<int, ExpertAddress>>> FakeDirectory::get_active_successors(
    std::span<const std::string> prefixes, Deadline) {
  ++calls_;
  if (!error_.is_ok()) return error_;
  std::set<std::string> seen;
  std::vector<std::map<int, ExpertAddress>> out;
  for (const std::string& prefix : prefixes) {
    if (!seen.insert(prefix).second) ++duplicates_;
    std::map<int, ExpertAddress> successors;
    for (const auto& [uid, endpoint] :
         live_) {  // sorted: the example below a coordinate is its smallest uid
      if (uid + '.' == prefix) {
        successors.emplace(-1,
                           ExpertAddress{uid, endpoint});  // a flat expert, as hivemind stores it
        continue;
      }
      if (!uid.starts_with(prefix)) continue;
      const std::string rest = uid.substr(prefix.size());
      const std::string head = rest.substr(0, rest.find('.'));
      successors.emplace(std::stoi(head), ExpertAddress{uid, endpoint});
    }
    out.push_back(std::move(successors));
  }
  return out;
}

std::vector<std::vector<ChosenExpert>> oracle_best_experts(
    const std::map<std::string, std::string>& live, const std::string& prefix,
    const std::vector<int64_t>& grid, const GridScores& scores, int64_t k) {
  std::vector<std::vector<ChosenExpert>> out(scores.batch_size);
  for (int64_t i = 0; i < scores.batch_size; ++i) {
    std::vector<ChosenExpert> all;
    for (const auto& [uid, endpoint] : live) {
      auto coords = parse_expert_uid(prefix, uid, grid);
      if (!coords) continue;
      double s = 0;
      for (size_t d = 0; d < grid.size(); ++d)
        s += scores.dims[d][i * grid[d] + (*coords)[d]];
      all.push_back({{uid, endpoint}, *coords, s});
    }
    std::sort(all.begin(), all.end(), [](const ChosenExpert& a, const ChosenExpert& b) {
      return a.score != b.score ? a.score > b.score : a.expert.uid < b.expert.uid;
    });
    if (static_cast<int64_t>(all.size()) > k) all.resize(k);
    out[i] = std::move(all);
  }
  return out;
}

ThreadPool::ThreadPool(int threads) {
  for (int t = 0; t < threads; ++t) {
    threads_.emplace_back([this] {
      while (true) {
        std::function<void()> job;
        {
          std::unique_lock lock(mu_);
          cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
          if (jobs_.empty()) return;
          job = std::move(jobs_.front());
          jobs_.pop_front();
        }
        job();
      }
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
}

void ThreadPool::post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

FakeCaller::FakeCaller(int threads) {
  if (threads > 0) pool_ = std::make_unique<ThreadPool>(threads);
}

FakeCaller::~FakeCaller() {
  // Exactly once: whatever is still held completes now (its waiter is long gone).
  std::vector<std::function<void()>> held;
  {
    std::lock_guard lock(mu_);
    held.swap(held_);
  }
  for (auto& h : held)
    h();
  pool_.reset();
}

void FakeCaller::add_expert(const std::string& uid, Module module) {
  add_multi_input_expert(uid, [module = std::move(module)](const std::vector<torch::Tensor>& x) {
    return module(x.at(0));
  });
}

void FakeCaller::add_multi_input_expert(const std::string& uid, MultiInputModule module) {
  add_multi_output_expert(uid, [module = std::move(module)](const std::vector<torch::Tensor>& x) {
    return std::vector<torch::Tensor>{module(x)};
  });
}

void FakeCaller::add_multi_output_expert(const std::string& uid, MultiOutputModule module) {
  std::lock_guard lock(mu_);
  modules_[uid] = std::move(module);
}

void FakeCaller::set_forward(const std::string& uid, Behavior b) {
  std::lock_guard lock(mu_);
  forward_behavior_[uid] = b;
}

void FakeCaller::set_backward(const std::string& uid, Behavior b) {
  std::lock_guard lock(mu_);
  backward_behavior_[uid] = b;
}

void FakeCaller::describe(const std::string& uid, protocol::ExpertInfo info) {
  std::lock_guard lock(mu_);
  descriptions_[uid] = std::move(info);
}

void FakeCaller::set_info(const std::string& uid, Behavior b) {
  std::lock_guard lock(mu_);
  info_behavior_[uid] = b;
}

int FakeCaller::info_calls() const {
  std::lock_guard lock(mu_);
  return info_calls_;
}

void FakeCaller::info(const ExpertAddress& expert, Deadline deadline, InfoCallback done) {
  std::optional<protocol::ExpertInfo> description;
  Behavior b = Behavior::kAnswer;
  {
    std::lock_guard lock(mu_);
    ++info_calls_;
    auto it = descriptions_.find(expert.uid);
    if (it != descriptions_.end()) description = it->second;
    auto behavior = info_behavior_.find(expert.uid);
    if (behavior != info_behavior_.end()) b = behavior->second;
  }
  if (!description && b == Behavior::kAnswer) return ExpertCaller::info(expert, deadline, done);
  auto answer = [description, done, b]() {
    if (b == Behavior::kFail || !description) return done(unavailable_error("injected failure"));
    done(*description);
  };
  if (b == Behavior::kHold) {
    std::lock_guard lock(mu_);
    held_.push_back(std::move(answer));
    return;
  }
  run(std::move(answer));
}

Behavior FakeCaller::behavior(const std::string& uid, bool backward) const {
  const auto& table = backward ? backward_behavior_ : forward_behavior_;
  auto it = table.find(uid);
  return it == table.end() ? Behavior::kAnswer : it->second;
}

std::vector<FakeCaller::Call> FakeCaller::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

void FakeCaller::run(std::function<void()> job) {
  if (pool_) {
    pool_->post(std::move(job));
  } else {
    job();
  }
}

void FakeCaller::release_held() {
  std::vector<std::function<void()>> held;
  {
    std::lock_guard lock(mu_);
    held.swap(held_);
  }
  for (auto& h : held)
    h();
}

void FakeCaller::forward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs, Deadline,
                         ExpertCallback done) {
  MultiOutputModule module;
  Behavior b;
  {
    std::lock_guard lock(mu_);
    calls_.push_back({expert.uid, inputs.at(0).size(0), false});
    auto it = modules_.find(expert.uid);
    if (it == modules_.end()) {
      done(not_found_error("no expert " + expert.uid));
      return;
    }
    module = it->second;
    b = behavior(expert.uid, false);
  }
  auto answer = [module, inputs, done, b]() mutable {
    if (b == Behavior::kFail) return done(unavailable_error("injected forward failure"));
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> outs = module(inputs);
    for (torch::Tensor& out : outs) {
      if (b == Behavior::kNaN) out = torch::full_like(out, std::numeric_limits<float>::quiet_NaN());
      if (b == Behavior::kWrongShape) out = torch::zeros({out.size(0) + 1, 1});
    }
    done(std::move(outs));
  };
  if (b == Behavior::kHold) {
    std::lock_guard lock(mu_);
    held_.push_back([answer = std::move(answer)]() mutable {
      torch::NoGradGuard no_grad;
      answer();
    });
    return;
  }
  run(std::move(answer));
}

void FakeCaller::backward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                          std::vector<torch::Tensor> grad_outputs, Deadline, ExpertCallback done) {
  MultiOutputModule module;
  Behavior b;
  {
    std::lock_guard lock(mu_);
    calls_.push_back({expert.uid, inputs.at(0).size(0), true});
    auto it = modules_.find(expert.uid);
    if (it == modules_.end()) {
      done(not_found_error("no expert " + expert.uid));
      return;
    }
    module = it->second;
    b = behavior(expert.uid, true);
  }
  auto answer = [module, inputs, grad_outputs, done, b]() mutable {
    if (b == Behavior::kFail) return done(unavailable_error("injected backward failure"));
    torch::AutoGradMode grad_mode(true);  // the autograd engine runs backward with grad mode off
    // As a server's backward: floating inputs are differentiated, the others (ids, masks) answer
    // zeros; the floating outputs are the roots, their gradients cast to the outputs' dtypes.
    std::vector<torch::Tensor> x, wrt;
    for (const torch::Tensor& input : inputs) {
      x.push_back(input.detach());
      if (c10::isFloatingType(input.scalar_type())) wrt.push_back(x.back().requires_grad_(true));
    }
    std::vector<torch::Tensor> y = module(x);
    if (grad_outputs.size() != y.size()) {
      return done(invalid_argument_error("backward took " + std::to_string(grad_outputs.size()) +
                                         " output gradients for " + std::to_string(y.size()) +
                                         " outputs"));
    }
    std::vector<torch::Tensor> roots, root_grads;
    for (size_t j = 0; j < y.size(); ++j) {
      if (!y[j].requires_grad()) continue;
      roots.push_back(y[j]);
      root_grads.push_back(grad_outputs[j].to(y[j].scalar_type()));
    }
    std::vector<torch::Tensor> wrt_grads;
    if (!roots.empty() && !wrt.empty()) {
      // An input the expert ignores gets a zero gradient, as a server's backward answers.
      wrt_grads = torch::autograd::grad(roots, wrt, root_grads, /*retain_graph=*/c10::nullopt,
                                        /*create_graph=*/false, /*allow_unused=*/true);
    }
    std::vector<torch::Tensor> gx(x.size());
    for (size_t i = 0, k = 0; i < x.size(); ++i) {
      if (x[i].requires_grad() && k < wrt_grads.size()) gx[i] = wrt_grads[k++];
    }
    for (size_t i = 0; i < gx.size(); ++i) {
      if (!gx[i].defined()) gx[i] = torch::zeros_like(x[i]);
      if (b == Behavior::kNaN)
        gx[i] = torch::full_like(gx[i], std::numeric_limits<float>::quiet_NaN());
      if (b == Behavior::kWrongShape) gx[i] = torch::zeros({gx[i].size(0), 1});
    }
    done(std::move(gx));
  };
  if (b == Behavior::kHold) {
    std::lock_guard lock(mu_);
    held_.push_back(std::move(answer));
    return;
  }
  run(std::move(answer));
}

}  // namespace hivemind::client::testing

namespace hivemind::client::testing {

torch::nn::Sequential make_ffn(int64_t hidden, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(hidden, 2 * hidden), torch::nn::Tanh(),
                               torch::nn::Linear(2 * hidden, hidden));
}

Swarm make_swarm(const std::string& prefix, const std::vector<int64_t>& grid, int64_t hidden,
                 double density, uint32_t seed, int threads) {
  Swarm swarm{prefix, grid, {}, nullptr, std::make_shared<FakeCaller>(threads)};
  std::mt19937 rng(seed);
  std::bernoulli_distribution alive(density);
  std::map<std::string, std::string> live;
  std::vector<int32_t> coords(grid.size(), 0);
  uint64_t n = 0;
  bool more = true;
  while (more) {
    if (alive(rng)) {
      const std::string uid = make_expert_uid(prefix, coords);
      live[uid] = "fake://" + std::to_string(n % 2);
      auto module = make_ffn(hidden, seed * 1000 + n);
      swarm.experts[uid] = module;
      swarm.caller->add_expert(
          uid, [module](const torch::Tensor& x) mutable { return module->forward(x); });
    }
    ++n;
    more = false;
    for (size_t d = grid.size(); d-- > 0;) {
      if (++coords[d] < grid[d]) {
        more = true;
        break;
      }
      coords[d] = 0;
    }
  }
  swarm.directory = std::make_shared<FakeDirectory>(std::move(live));
  return swarm;
}

torch::Tensor gating_input(const torch::Tensor& x) {
  if (x.dim() == 2) return x;
  std::vector<int64_t> middle;
  for (int64_t d = 1; d < x.dim() - 1; ++d)
    middle.push_back(d);
  return x.mean(middle);
}

RemoteMixtureOfExpertsOptions moe_options(const Swarm& swarm, int64_t in_features, int64_t k_best) {
  RemoteMixtureOfExpertsOptions o;
  o.in_features = in_features;
  o.grid_size = swarm.grid;
  o.uid_prefix = swarm.prefix;
  o.k_best = k_best;
  return o;
}

torch::Tensor reference_mixture(const std::vector<torch::Tensor>& grid,
                                const std::vector<std::vector<ChosenExpert>>& chosen,
                                const ExpertOutput& output, const torch::Tensor& empty_row) {
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < static_cast<int64_t>(chosen.size()); ++i) {
    std::vector<torch::Tensor> logits, outs;
    for (const ChosenExpert& e : chosen[i]) {
      std::optional<torch::Tensor> out = output(i, e);
      if (!out) continue;
      torch::Tensor logit = grid[0].index({i, e.coords[0]});
      for (size_t d = 1; d < grid.size(); ++d)
        logit = logit + grid[d].index({i, e.coords[d]});
      logits.push_back(logit);
      outs.push_back(*out);
    }
    if (logits.empty()) {
      rows.push_back(empty_row);
      continue;
    }
    const torch::Tensor w = torch::softmax(torch::stack(logits), 0);
    torch::Tensor row = w[0] * outs[0];
    for (size_t j = 1; j < outs.size(); ++j)
      row = row + w[j] * outs[j];
    rows.push_back(row);
  }
  return torch::stack(rows);
}

}  // namespace hivemind::client::testing
