#include "learned_output_schemas.h"

#include <condition_variable>
#include <memory>

#include <hivemind/common/wait_interrupt.h>

namespace hivemind::client::detail {
namespace {

// The answers of one resolve, shared with the callbacks: they may complete after an abandoned wait
// (Ctrl-C) or past the deadline, when the resolve is long gone.
struct Answers {
  std::mutex mutex;
  std::condition_variable changed;
  size_t pending = 0;
  std::optional<protocol::ExpertInfo> first;  // the first description that arrived
};

}  // namespace

std::optional<OutputSchemas> LearnedOutputSchemas::resolve(
    const std::vector<ExpertAddress>& experts, ExpertCaller& caller, Deadline deadline) {
  if (auto schemas = known()) return schemas;
  if (experts.empty()) return std::nullopt;
  auto answers = std::make_shared<Answers>();
  answers->pending = experts.size();
  for (const ExpertAddress& expert : experts) {
    caller.info(expert, deadline, [answers](Result<protocol::ExpertInfo> info) {
      {
        std::lock_guard lock(answers->mutex);
        --answers->pending;
        if (info.is_ok() && !answers->first) answers->first = std::move(info).value();
      }
      answers->changed.notify_all();
    });
  }
  // The lock is held only inside each slice: the interrupt hook runs without it.
  wait_polling_interrupt(deadline.at(), [&](SteadyTime until) {
    std::unique_lock lock(answers->mutex);
    return answers->changed.wait_until(
        lock, until, [&] { return answers->first.has_value() || answers->pending == 0; });
  });
  std::optional<protocol::ExpertInfo> first;
  {
    std::lock_guard lock(answers->mutex);
    first = answers->first;
  }
  if (!first) return std::nullopt;
  std::lock_guard lock(mutex_);
  if (!schemas_) schemas_ = std::move(first->outputs);
  return schemas_;
}

std::optional<OutputSchemas> LearnedOutputSchemas::known() const {
  std::lock_guard lock(mutex_);
  return schemas_;
}

std::optional<std::vector<std::vector<int64_t>>> LearnedOutputSchemas::known_shapes() const {
  std::optional<OutputSchemas> schemas = known();
  if (!schemas) return std::nullopt;
  std::vector<std::vector<int64_t>> shapes;
  shapes.reserve(schemas->size());
  for (protocol::TensorSchema& schema : *schemas)
    shapes.push_back(std::move(schema.shape));
  return shapes;
}

}  // namespace hivemind::client::detail
