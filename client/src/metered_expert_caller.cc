#include <stdexcept>
#include <utility>

#include <hivemind/client/metered_expert_caller.h>
#include <hivemind/common/clock.h>

namespace hivemind::client {

std::shared_ptr<MeteredExpertCaller> MeteredExpertCaller::create(
    std::shared_ptr<ExpertCaller> inner, MetricsRegistry& registry) {
  if (!inner) throw std::invalid_argument("MeteredExpertCaller: no caller to wrap");
  return std::shared_ptr<MeteredExpertCaller>(new MeteredExpertCaller(std::move(inner), registry));
}

ExpertCallback MeteredExpertCaller::metered(CallMethod method, ExpertCallback done) const {
  metrics_.call_started(method);
  // ClientMetrics only points into the registry, so the wrapper copies it (three pointers per
  // method) rather than keep this caller alive until the call completes.
  return [metrics = metrics_, method, started = SteadyClock::now(),
          done = std::move(done)](Result<std::vector<torch::Tensor>> result) mutable {
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
    metrics.call_finished(method, result.status(), seconds);
    done(std::move(result));
  };
}

void MeteredExpertCaller::forward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                                  Deadline deadline, ExpertCallback done) {
  inner_->forward(expert, std::move(inputs), deadline,
                  metered(CallMethod::kForward, std::move(done)));
}

void MeteredExpertCaller::backward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                                   std::vector<torch::Tensor> grad_outputs, Deadline deadline,
                                   ExpertCallback done) {
  inner_->backward(expert, std::move(inputs), std::move(grad_outputs), deadline,
                   metered(CallMethod::kBackward, std::move(done)));
}

void MeteredExpertCaller::info(const ExpertAddress& expert, Deadline deadline, InfoCallback done) {
  inner_->info(expert, deadline, std::move(done));
}

}  // namespace hivemind::client
