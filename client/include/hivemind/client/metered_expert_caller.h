// MeteredExpertCaller: an ExpertCaller that counts every call it passes on into ClientMetrics.
//
// A trainer wraps the caller it gives RemoteMixtureOfExperts / RemoteExpert (the RpcExpertCaller,
// or any other) and exposes the registry with a MetricsHttpServer:
//
//   MetricsRegistry registry;
//   auto caller = MeteredExpertCaller::create(RpcExpertCaller::create(rpc), registry);
//   auto http = MetricsHttpServer::start(registry, {.port = 9100});
//
// The wrapper adds no thread and no copy: the tensors and the completion move through, and the
// completion is wrapped to count the outcome before it runs, on whatever thread it completes.
#pragma once

#include <memory>

#include <hivemind/client/client_metrics.h>
#include <hivemind/client/expert_caller.h>

namespace hivemind::client {

class MeteredExpertCaller final : public ExpertCaller {
 public:
  // `registry` must outlive the caller and every call it completes.
  static std::shared_ptr<MeteredExpertCaller> create(std::shared_ptr<ExpertCaller> inner,
                                                     MetricsRegistry& registry);

  void forward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs, Deadline deadline,
               ExpertCallback done) override;
  void backward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                std::vector<torch::Tensor> grad_outputs, Deadline deadline,
                ExpertCallback done) override;
  // Passed on uncounted: the metrics count expert calls, and `info` is answered from the inner
  // caller's cache after an expert's first call.
  void info(const ExpertAddress& expert, Deadline deadline, InfoCallback done) override;

  const std::shared_ptr<ExpertCaller>& inner() const { return inner_; }

 private:
  MeteredExpertCaller(std::shared_ptr<ExpertCaller> inner, MetricsRegistry& registry)
      : inner_(std::move(inner)), metrics_(registry) {}

  // Counts the call as started and returns `done` wrapped to count its outcome.
  ExpertCallback metered(CallMethod method, ExpertCallback done) const;

  std::shared_ptr<ExpertCaller> inner_;
  ClientMetrics metrics_;
};

}  // namespace hivemind::client
