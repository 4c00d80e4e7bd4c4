// The demo's classification task, generated from a seed so every run and every machine sees the
// same data: each class owns two cluster centres in feature space (so the classes are not linearly
// separable), samples are a centre plus Gaussian noise.
#pragma once

#include <cstdint>
#include <utility>

#include <torch/types.h>

namespace hivemind::demo {

struct SyntheticTaskOptions {
  int64_t features = 32;
  int64_t classes = 8;
  int64_t centres_per_class = 2;
  double centre_scale = 1.0;  // centres ~ N(0, centre_scale^2) per feature
  double noise = 0.6;         // samples = centre + N(0, noise^2)
  uint64_t seed = 2026;
};

class SyntheticTask {
 public:
  explicit SyntheticTask(SyntheticTaskOptions options = {});

  // A batch of (inputs [n, features], labels [n]) drawn with `generator_seed`; the same seed gives
  // the same batch.
  std::pair<torch::Tensor, torch::Tensor> batch(int64_t n, uint64_t generator_seed) const;

  const SyntheticTaskOptions& options() const { return options_; }

 private:
  SyntheticTaskOptions options_;
  torch::Tensor centres_;  // [classes * centres_per_class, features]
};

}  // namespace hivemind::demo
