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

// The scores must cover the grid: one [batch, grid_size[d]] block per dimension.
Status check_search_input(const GridScores& scores, std::span<const int64_t> grid_size,
                          int64_t k_best) {
  const size_t num_dims = grid_size.size();
  if (k_best <= 0) return invalid_argument_error("beam search: k_best must be positive");
  if (scores.dims.size() != num_dims) {
    return invalid_argument_error("beam search: got scores for " +
                                  std::to_string(scores.dims.size()) +
                                  " grid dimensions, the grid has " + std::to_string(num_dims));
  }
  for (size_t d = 0; d < num_dims; ++d) {
    if (static_cast<int64_t>(scores.dims[d].size()) != scores.batch_size * grid_size[d]) {
      return invalid_argument_error("beam search: scores of dimension " + std::to_string(d) +
                                    " do not have shape [batch, " + std::to_string(grid_size[d]) +
                                    "]");
    }
  }
  return Status::ok();
}

// One directory round's question: the distinct prefix keys, and for every sample which key each
// prefix of its frontier is (prefixes[asked_by[i][n]] for frontier[i][n]).
struct RoundQuery {
  std::vector<std::string> prefixes;
  std::vector<std::vector<size_t>> asked_by;
};

// The state of one batch_find_best_experts call and its steps: each sample's k best live experts so
// far and its frontier of prefixes that may still hold better ones.
class BatchSearch {
 public:
  BatchSearch(const GridScores& scores, const std::string& uid_prefix,
              std::span<const int64_t> grid_size, size_t k_best)
      : scores_(scores),
        uid_prefix_(uid_prefix),
        grid_size_(grid_size),
        batch_(scores.batch_size),
        best_(static_cast<size_t>(scores.batch_size), TopK(k_best)),
        frontier_(static_cast<size_t>(scores.batch_size)) {
    compute_best_rest();
    // Round 1 asks for every first coordinate: nothing is known about the grid before it.
    for (int64_t i = 0; i < batch_; ++i) {
      frontier_[i].reserve(grid_size_[0]);
      for (int32_t c = 0; c < grid_size_[0]; ++c)
        frontier_[i].push_back({{c}, 0.0 + score_at(i, 0, c)});
    }
  }

  // A grid of D >= 2 dimensions takes D - 1 rounds (the last coordinate comes with its parent's
  // successors); a flat grid one.
  size_t num_rounds() const { return grid_size_.size() == 1 ? 1 : grid_size_.size() - 1; }

  // The prefixes every sample's frontier asks in `round`, each asked once. Empty: nothing to ask.
  RoundQuery query(size_t round) const {
    RoundQuery q;
    if (batch_ == 0) return q;
    q.asked_by.resize(static_cast<size_t>(batch_));
    if (round == 0) {
      // Every sample asks the same first coordinates: build the keys once, not once per sample.
      for (int32_t c = 0; c < grid_size_[0]; ++c)
        q.prefixes.push_back(prefix_key({c}));
      for (int64_t i = 0; i < batch_; ++i) {
        q.asked_by[i].resize(frontier_[i].size());
        for (size_t n = 0; n < frontier_[i].size(); ++n)
          q.asked_by[i][n] = static_cast<size_t>(frontier_[i][n].coords[0]);
      }
      return q;
    }
    std::unordered_map<std::string, size_t> index;
    for (int64_t i = 0; i < batch_; ++i) {
      q.asked_by[i].reserve(frontier_[i].size());
      for (const Prefix& p : frontier_[i]) {
        auto [it, inserted] = index.try_emplace(prefix_key(p.coords), q.prefixes.size());
        if (inserted) q.prefixes.push_back(it->first);
        q.asked_by[i].push_back(it->second);
      }
    }
    return q;
  }

  // Takes the directory's answer to `q` (asked in `round`): offers the live experts it names to
  // each sample's top k, and replaces each frontier by the children that may still hold a better
  // expert.
  void advance(size_t round, const RoundQuery& q,
               const std::vector<std::map<int, ExpertAddress>>& successors) {
    const size_t depth = round + 1;  // coordinates in each prefix asked this round
    for (int64_t i = 0; i < batch_; ++i) {
      std::vector<Prefix> next;
      for (size_t n = 0; n < frontier_[i].size(); ++n) {
        const std::map<int, ExpertAddress>& live = successors[q.asked_by[i][n]];
        if (grid_size_.size() == 1)
          offer_flat_expert(i, frontier_[i][n], live);
        else
          expand_prefix(i, depth, frontier_[i][n], live, next);
      }
      prune(i, next);
      frontier_[i] = std::move(next);
    }
  }

  std::vector<std::vector<ChosenExpert>> results() && {
    std::vector<std::vector<ChosenExpert>> out;
    out.reserve(best_.size());
    for (TopK& b : best_)
      out.push_back(std::move(b).take());
    return out;
  }

 private:
  double score_at(int64_t sample, size_t dim, int64_t coord) const {
    return sanitize(scores_.dims[dim][sample * grid_size_[dim] + coord]);
  }

  // best_rest_[i][d]: the best score of dimension d for sample i, for the optimistic completion
  // bound.
  void compute_best_rest() {
    const size_t num_dims = grid_size_.size();
    best_rest_.assign(static_cast<size_t>(batch_), std::vector<double>(num_dims, kMinusInf));
    for (int64_t i = 0; i < batch_; ++i) {
      for (size_t d = 0; d < num_dims; ++d) {
        for (int64_t c = 0; c < grid_size_[d]; ++c)
          best_rest_[i][d] = std::max(best_rest_[i][d], score_at(i, d, c));
      }
    }
  }

  // The best score any expert below a prefix of `score` with `next_dim` coordinates can have.
  // Summed in the same left-to-right order as every expert's score, so rounding (monotone) keeps
  // the bound >= the score of every expert below the prefix: ties are kept, nothing reachable is
  // pruned.
  double upper_from(int64_t sample, double score, size_t next_dim) const {
    for (size_t d = next_dim; d < grid_size_.size(); ++d)
      score += best_rest_[sample][d];
    return score;
  }

  double exact_score(int64_t sample, const std::vector<int32_t>& coords) const {
    double s = 0;
    for (size_t d = 0; d < grid_size_.size(); ++d)
      s += score_at(sample, d, coords[d]);
    return s;
  }

  std::string prefix_key(const std::vector<int32_t>& coords) const {
    std::string key = make_expert_uid(uid_prefix_, coords);
    key += kUidDelimiter;
    return key;
  }

  // A flat grid: expert "prefix.c" is live when its own key lists it (under coordinate -1 in
  // hivemind).
  void offer_flat_expert(int64_t sample, const Prefix& parent,
                         const std::map<int, ExpertAddress>& live) {
    const std::string uid = make_expert_uid(uid_prefix_, parent.coords);
    for (const auto& [coord, expert] : live) {
      if (expert.uid == uid) {
        best_[sample].offer({expert, parent.coords, parent.score});
        return;
      }
    }
  }

  // One live successor per child coordinate: at the last dimension it is the expert itself;
  // above, a child prefix for the next round, whose example expert tightens the bound at once.
  void expand_prefix(int64_t sample, size_t depth, const Prefix& parent,
                     const std::map<int, ExpertAddress>& live, std::vector<Prefix>& next) {
    TopK& best = best_[sample];
    for (const auto& [coord, expert] : live) {
      if (coord < 0 || coord >= grid_size_[depth]) continue;  // outside our grid: another tenant's
      const double score = parent.score + score_at(sample, depth, coord);
      if (depth + 1 == grid_size_.size()) {
        // Most successors cannot enter the top k: reject them before building anything.
        if (!best.may_enter(score)) continue;
        std::vector<int32_t> coords = parent.coords;
        coords.push_back(coord);
        if (expert.uid != make_expert_uid(uid_prefix_, coords)) continue;  // inconsistent record
        best.offer({expert, std::move(coords), score});
        continue;
      }
      // The bound only grows, so what falls below it now stays below it.
      if (upper_from(sample, score, depth + 1) < best.bound()) continue;
      Prefix child{parent.coords, score};
      child.coords.push_back(coord);
      // The example expert below this child is live: its exact score tightens the bound.
      if (auto example = parse_expert_uid(uid_prefix_, expert.uid, grid_size_);
          example && std::equal(child.coords.begin(), child.coords.end(), example->begin())) {
        const double s = exact_score(sample, *example);
        if (best.may_enter(s)) best.offer({expert, std::move(*example), s});
      }
      next.push_back(std::move(child));
    }
  }

  // Drops the children whose best conceivable expert cannot reach the top k any more.
  void prune(int64_t sample, std::vector<Prefix>& children) const {
    const double bound = best_[sample].bound();
    std::erase_if(children, [&](const Prefix& p) {
      return upper_from(sample, p.score, p.coords.size()) < bound;
    });
  }

  const GridScores& scores_;
  const std::string& uid_prefix_;
  std::span<const int64_t> grid_size_;
  int64_t batch_;
  std::vector<std::vector<double>> best_rest_;
  std::vector<TopK> best_;
  std::vector<std::vector<Prefix>> frontier_;
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
  HIVEMIND_RETURN_IF_ERROR(check_search_input(scores, grid_size_, k_best));
  if (stats) stats->prefixes_per_round.clear();

  BatchSearch search(scores, uid_prefix_, grid_size_, static_cast<size_t>(k_best));
  for (size_t round = 0; round < search.num_rounds(); ++round) {
    // One directory round for the whole batch, each prefix asked once.
    const RoundQuery query = search.query(round);
    if (query.prefixes.empty()) break;
    if (stats) stats->prefixes_per_round.push_back(query.prefixes.size());
    auto answer = directory_->get_active_successors(query.prefixes, deadline);
    if (!answer.is_ok())
      return answer.status().with_context("beam search over '" + uid_prefix_ + "'");
    if (answer->size() != query.prefixes.size()) {
      return internal_error("beam search: the directory answered " +
                            std::to_string(answer->size()) + " prefixes of " +
                            std::to_string(query.prefixes.size()));
    }
    search.advance(round, query, *answer);
  }
  return std::move(search).results();
}

}  // namespace hivemind::client
