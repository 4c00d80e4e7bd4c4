// MoEBeamSearcher: each sample's k best live experts on a grid, found through the ExpertDirectory.
//
// hivemind's MoEBeamSearcher runs one beam search per sample, with several DHT rounds per
// dimension, and is approximate: a beam of k prefixes can miss a top-k expert when part of the grid
// is dead. This one is exact and batched:
//  - the whole batch shares each directory round, with its prefixes deduplicated across samples;
//  - a grid of D >= 2 dimensions takes D - 1 rounds (a flat grid one): round r asks for the
//    successors of the surviving depth-r prefixes ("expert.3." at depth 1);
//  - branch and bound instead of a fixed beam: every successor map names one live expert below each
//    live child prefix, so the k-th best live expert seen so far is a lower bound L on the k-th
//    best score; a prefix whose best conceivable completion (its score plus the best index of every
//    remaining dimension) is below L cannot hold a top-k expert and is dropped. Nothing that can
//    reach the top k is ever dropped, so the result equals a brute-force ranking of all live
//    experts.
// Ranking: score (sum over dimensions of that dimension's score at the expert's coordinate, summed
// left to right in double) descending, then uid ascending for ties. NaN scores count as -inf.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include <hivemind/client/expert_caller.h>
#include <hivemind/client/expert_directory.h>
#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind::client {

struct ChosenExpert {
  ExpertAddress expert;
  std::vector<int32_t> coords;  // the expert's grid coordinates, one per dimension
  double score = 0;             // sum of its per-dimension scores
};

// Per-dimension gating scores of a batch, on the CPU, in double: dims[d][i * grid_size[d] + c].
struct GridScores {
  int64_t batch_size = 0;
  std::vector<std::vector<double>> dims;

  // From tensors of shape [batch, grid_size[d]] (any floating dtype and device; copied to the CPU).
  static GridScores from_tensors(std::span<const torch::Tensor> grid_scores);
};

// What one search did, for tests and logs.
struct BeamSearchStats {
  std::vector<size_t> prefixes_per_round;  // distinct prefixes asked in each directory round
};

class MoEBeamSearcher {
 public:
  // `uid_prefix` may omit the trailing '.'. Throws std::invalid_argument on an empty or
  // non-positive grid.
  MoEBeamSearcher(std::shared_ptr<ExpertDirectory> directory, std::string_view uid_prefix,
                  std::vector<int64_t> grid_size);

  // For every sample, up to k_best live experts, best first (fewer when fewer are live). Every
  // directory round must finish by `deadline`; a directory error fails the whole search.
  Result<std::vector<std::vector<ChosenExpert>>> batch_find_best_experts(
      const GridScores& scores, int64_t k_best, Deadline deadline,
      BeamSearchStats* stats = nullptr) const;

  Result<std::vector<std::vector<ChosenExpert>>> batch_find_best_experts(
      std::span<const torch::Tensor> grid_scores, int64_t k_best, Deadline deadline,
      BeamSearchStats* stats = nullptr) const {
    return batch_find_best_experts(GridScores::from_tensors(grid_scores), k_best, deadline, stats);
  }

  const std::string& uid_prefix() const { return uid_prefix_; }
  const std::vector<int64_t>& grid_size() const { return grid_size_; }

 private:
  std::shared_ptr<ExpertDirectory> directory_;
  std::string uid_prefix_;  // normalized, ends with '.'
  std::vector<int64_t> grid_size_;
};

}  // namespace hivemind::client
