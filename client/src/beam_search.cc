#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include <torch/types.h>

#include <hivemind/client/beam_search.h>
#include <hivemind/client/expert_uid.h>
#include <hivemind/common/logging.h>

namespace hivemind::client {
namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();
// +inf stands in for this: sums then never meet +inf + -inf = NaN, and ranks are kept.
constexpr double kHuge = 1e300;

double sanitize(double score) {
  if (std::isnan(score)) return kMinusInf;
  if (score == std::numeric_limits<double>::infinity()) return kHuge;
  return score;
}

// Best first: higher score, then the smaller uid.
bool ranks_before(const ChosenExpert& a, const ChosenExpert& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.expert.uid < b.expert.uid;
}

// The k best experts seen so far for one sample, sorted best first; k is small (k_best).
class TopK {
 public:
  explicit TopK(size_t k) : k_(k) { best_.reserve(k + 1); }

  void offer(ChosenExpert candidate) {
    for (const ChosenExpert& e : best_) {
      if (e.expert.uid == candidate.expert.uid) return;  // an example seen again deeper in the grid
    }
    if (best_.size() == k_ && !ranks_before(candidate, best_.back())) return;
    best_.insert(std::upper_bound(best_.begin(), best_.end(), candidate, ranks_before),
                 std::move(candidate));
    if (best_.size() > k_) best_.pop_back();
  }

  // Whether an expert with this score could rank among the k best (ties are settled by uid in
  // offer).
  bool may_enter(double score) const { return best_.size() < k_ || score >= best_.back().score; }

  // Lower bound on the k-th best live score; -inf until k experts are known.
  double bound() const { return best_.size() == k_ ? best_.back().score : kMinusInf; }

  std::vector<ChosenExpert> take() && { return std::move(best_); }

 private:
  size_t k_;
  std::vector<ChosenExpert> best_;
};

struct Prefix {
  std::vector<int32_t> coords;
  double score;  // left-to-right sum of its coordinates' scores
};

}  // namespace

GridScores GridScores::from_tensors(std::span<const torch::Tensor> grid_scores) {
  GridScores out;
  if (grid_scores.empty()) return out;
  out.batch_size = grid_scores.front().size(0);
  out.dims.reserve(grid_scores.size());
  for (const torch::Tensor& t : grid_scores) {
    if (t.dim() != 2 || t.size(0) != out.batch_size) {
      throw std::invalid_argument(
          "GridScores: every grid dimension needs scores of shape [batch, size]");
    }
    const torch::Tensor cpu = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
    const double* data = cpu.data_ptr<double>();
    out.dims.emplace_back(data, data + cpu.numel());
  }
  return out;
}

MoEBeamSearcher::MoEBeamSearcher(std::shared_ptr<ExpertDirectory> directory,
                                 std::string_view uid_prefix, std::vector<int64_t> grid_size)
    : directory_(std::move(directory)),
      uid_prefix_(normalize_uid_prefix(uid_prefix)),
      grid_size_(std::move(grid_size)) {
  if (!directory_) throw std::invalid_argument("MoEBeamSearcher: no directory");
  if (grid_size_.empty()) throw std::invalid_argument("MoEBeamSearcher: empty grid_size");
  for (int64_t g : grid_size_) {
    if (g <= 0 || g > std::numeric_limits<int32_t>::max()) {
      throw std::invalid_argument("MoEBeamSearcher: every grid dimension must be in [1, 2^31)");
    }
  }
}

Result<std::vector<std::vector<ChosenExpert>>> MoEBeamSearcher::batch_find_best_experts(
    const GridScores& scores, int64_t k_best, Deadline deadline, BeamSearchStats* stats) const {
  const size_t num_dims = grid_size_.size();
  const int64_t batch = scores.batch_size;
  if (k_best <= 0) return invalid_argument_error("beam search: k_best must be positive");
  if (scores.dims.size() != num_dims) {
    return invalid_argument_error("beam search: got scores for " +
                                  std::to_string(scores.dims.size()) +
                                  " grid dimensions, the grid has " + std::to_string(num_dims));
  }
  for (size_t d = 0; d < num_dims; ++d) {
    if (static_cast<int64_t>(scores.dims[d].size()) != batch * grid_size_[d]) {
      return invalid_argument_error("beam search: scores of dimension " + std::to_string(d) +
                                    " do not have shape [batch, " + std::to_string(grid_size_[d]) +
                                    "]");
    }
  }
  if (stats) stats->prefixes_per_round.clear();

  auto score_at = [&](int64_t sample, size_t dim, int64_t coord) {
    return sanitize(scores.dims[dim][sample * grid_size_[dim] + coord]);
  };
  // best_rest[i][d]: the best score of dimension d for sample i, for the optimistic completion
  // bound.
  std::vector<std::vector<double>> best_rest(batch, std::vector<double>(num_dims, kMinusInf));
  for (int64_t i = 0; i < batch; ++i) {
    for (size_t d = 0; d < num_dims; ++d) {
      for (int64_t c = 0; c < grid_size_[d]; ++c)
        best_rest[i][d] = std::max(best_rest[i][d], score_at(i, d, c));
    }
  }
  // Summed in the same left-to-right order as every expert's score, so rounding (monotone) keeps
  // the bound >= the score of every expert below the prefix: ties are kept, nothing reachable is
  // pruned.
  auto upper_from = [&](int64_t sample, double score, size_t next_dim) {
    for (size_t d = next_dim; d < num_dims; ++d)
      score += best_rest[sample][d];
    return score;
  };
  auto upper_bound = [&](int64_t sample, const Prefix& p) {
    return upper_from(sample, p.score, p.coords.size());
  };
  auto exact_score = [&](int64_t sample, const std::vector<int32_t>& coords) {
    double s = 0;
    for (size_t d = 0; d < num_dims; ++d)
      s += score_at(sample, d, coords[d]);
    return s;
  };
  auto prefix_key = [&](const std::vector<int32_t>& coords) {
    std::string key = make_expert_uid(uid_prefix_, coords);
    key += kUidDelimiter;
    return key;
  };

  std::vector<TopK> best(batch, TopK(static_cast<size_t>(k_best)));
  // Round 1 asks for every first coordinate: nothing is known about the grid before it.
  std::vector<std::vector<Prefix>> frontier(batch);
  for (int64_t i = 0; i < batch; ++i) {
    frontier[i].reserve(grid_size_[0]);
    for (int32_t c = 0; c < grid_size_[0]; ++c)
      frontier[i].push_back({{c}, 0.0 + score_at(i, 0, c)});
  }

  const size_t num_rounds = num_dims == 1 ? 1 : num_dims - 1;
  for (size_t round = 0; round < num_rounds; ++round) {
    // One directory round for the whole batch, each prefix asked once.
    std::vector<std::string> prefixes;
    std::unordered_map<std::string, size_t> prefix_index;
    std::vector<std::vector<size_t>> query_of(batch);
    if (round == 0) {
      // Every sample asks the same first coordinates: build the keys once, not once per sample.
      for (int32_t c = 0; c < grid_size_[0]; ++c)
        prefixes.push_back(prefix_key({c}));
      for (int64_t i = 0; i < batch; ++i) {
        query_of[i].resize(frontier[i].size());
        for (size_t n = 0; n < frontier[i].size(); ++n)
          query_of[i][n] = static_cast<size_t>(frontier[i][n].coords[0]);
      }
    } else {
      for (int64_t i = 0; i < batch; ++i) {
        query_of[i].reserve(frontier[i].size());
        for (const Prefix& p : frontier[i]) {
          auto [it, inserted] = prefix_index.try_emplace(prefix_key(p.coords), prefixes.size());
          if (inserted) prefixes.push_back(it->first);
          query_of[i].push_back(it->second);
        }
      }
    }
    if (batch == 0) break;
    if (prefixes.empty()) break;
    if (stats) stats->prefixes_per_round.push_back(prefixes.size());
    auto answer = directory_->get_active_successors(prefixes, deadline);
    if (!answer.is_ok())
      return answer.status().with_context("beam search over '" + uid_prefix_ + "'");
    const std::vector<std::map<int, ExpertAddress>>& successors = answer.value();
    if (successors.size() != prefixes.size()) {
      return internal_error("beam search: the directory answered " +
                            std::to_string(successors.size()) + " prefixes of " +
                            std::to_string(prefixes.size()));
    }

    const size_t depth = round + 1;  // coordinates in each prefix asked this round
    for (int64_t i = 0; i < batch; ++i) {
      std::vector<Prefix> next;
      for (size_t n = 0; n < frontier[i].size(); ++n) {
        const Prefix& parent = frontier[i][n];
        const std::map<int, ExpertAddress>& live = successors[query_of[i][n]];
        if (num_dims == 1) {
          // A flat expert "prefix.c" is live when its key lists it (under coordinate -1 in
          // hivemind).
          const std::string uid = make_expert_uid(uid_prefix_, parent.coords);
          for (const auto& [coord, ref] : live) {
            if (ref.uid == uid) {
              best[i].offer({ref, parent.coords, parent.score});
              break;
            }
          }
          continue;
        }
        for (const auto& [coord, ref] : live) {
          if (coord < 0 || coord >= grid_size_[depth])
            continue;  // outside our grid: another tenant's
          const double score = parent.score + score_at(i, depth, coord);
          if (depth + 1 == num_dims) {
            // Most successors cannot enter the top k: reject them before building anything.
            if (!best[i].may_enter(score)) continue;
            std::vector<int32_t> coords = parent.coords;
            coords.push_back(coord);
            if (ref.uid != make_expert_uid(uid_prefix_, coords)) continue;  // inconsistent record
            best[i].offer({ref, std::move(coords), score});
            continue;
          }
          // The bound only grows, so what falls below it now stays below it.
          if (upper_from(i, score, depth + 1) < best[i].bound()) continue;
          Prefix child{parent.coords, score};
          child.coords.push_back(coord);
          // The example expert below this child is live: its exact score tightens the bound.
          if (auto example = parse_expert_uid(uid_prefix_, ref.uid, grid_size_);
              example && std::equal(child.coords.begin(), child.coords.end(), example->begin())) {
            const double s = exact_score(i, *example);
            if (best[i].may_enter(s)) best[i].offer({ref, std::move(*example), s});
          }
          next.push_back(std::move(child));
        }
      }
      const double bound = best[i].bound();
      std::erase_if(next, [&](const Prefix& p) { return upper_bound(i, p) < bound; });
      frontier[i] = std::move(next);
    }
  }

  std::vector<std::vector<ChosenExpert>> out;
  out.reserve(batch);
  for (TopK& b : best)
    out.push_back(std::move(b).take());
  return out;
}

}  // namespace hivemind::client
