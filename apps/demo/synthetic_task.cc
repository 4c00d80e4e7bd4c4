#include "synthetic_task.h"

#include <ATen/CPUGeneratorImpl.h>

namespace hivemind::demo {

SyntheticTask::SyntheticTask(SyntheticTaskOptions options) : options_(options) {
  auto generator = at::detail::createCPUGenerator(options_.seed);
  centres_ =
      torch::randn({options_.classes * options_.centres_per_class, options_.features}, generator) *
      options_.centre_scale;
}

std::pair<torch::Tensor, torch::Tensor> SyntheticTask::batch(int64_t n,
                                                             uint64_t generator_seed) const {
  auto generator = at::detail::createCPUGenerator(generator_seed);
  auto centre = torch::randint(centres_.size(0), {n}, generator, torch::kLong);
  auto inputs = centres_.index_select(0, centre) +
                torch::randn({n, options_.features}, generator) * options_.noise;
  auto labels = centre.remainder(options_.classes);  // centres c and c + classes share a label
  return {inputs, labels};
}

}  // namespace hivemind::demo
