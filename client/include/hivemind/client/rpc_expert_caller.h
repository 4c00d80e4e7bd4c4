// RpcExpertCaller: the ExpertCaller that reaches experts over the transport's RPC (info, forward,
// backward of the expert protocol), with every tensor quantized per the expert's schema.
//
// An expert's `info` is fetched once per (uid, endpoint) and cached; it says which compression each
// input, output and gradient uses on the wire. Asking again while a fetch is in flight joins it
// (an MoE layer's first forward asks every chosen expert, then calls them). Tensors are encoded on
// the caller's thread (on the GPU for CUDA tensors, so PCIe and the network carry uint8) and sent
// from their own memory. Answers land on the device and in the dtype of the request's tensors: raw
// ones bound for the CPU become views of the received buffers on the transport's I/O thread (no
// copy, no math); any that must be dequantized, converted or uploaded are decoded on LibTorch's
// inter-op thread pool, never on the I/O thread.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <hivemind/client/expert_caller.h>
#include <hivemind/common/clock.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/transport/rpc/client.h>

namespace hivemind::client {

class RpcExpertCaller final : public ExpertCaller,
                              public std::enable_shared_from_this<RpcExpertCaller> {
 public:
  static std::shared_ptr<RpcExpertCaller> create(std::shared_ptr<transport::rpc::Client> rpc);

  void forward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs, Deadline deadline,
               ExpertCallback done) override;
  void backward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                std::vector<torch::Tensor> grad_outputs, Deadline deadline,
                ExpertCallback done) override;

  // The expert's description, from the cache or one `info` call: a fetch already in flight whose
  // deadline is not earlier than `deadline` is joined (its outcome is this call's), else a new one
  // starts. `done` runs exactly once, possibly on the transport's I/O thread (it must not block).
  void info(const ExpertAddress& expert, Deadline deadline, InfoCallback done) override;
  // Blocking form for trainers and tools.
  Result<protocol::ExpertInfo> info(const ExpertAddress& expert, Deadline deadline);

 private:
  explicit RpcExpertCaller(std::shared_ptr<transport::rpc::Client> rpc) : rpc_(std::move(rpc)) {}

  void call(const ExpertAddress& expert, std::string_view method,
            std::vector<torch::Tensor> tensors, size_t num_inputs, Deadline deadline,
            ExpertCallback done);
  void send(const ExpertAddress& expert, const std::string& method,
            std::vector<torch::Tensor> tensors, size_t num_inputs, const protocol::ExpertInfo& info,
            Deadline deadline, ExpertCallback done);
  std::optional<protocol::ExpertInfo> cached_info(const ExpertAddress& expert);

  std::shared_ptr<transport::rpc::Client> rpc_;
  std::mutex mutex_;
  std::unordered_map<std::string, protocol::ExpertInfo> info_cache_;  // key: uid + '@' + endpoint
  // Fetches in flight, by the same key: each one's deadline and the callbacks waiting on it.
  struct InfoFetch {
    Deadline deadline;
    std::vector<InfoCallback> waiting;
  };
  std::unordered_multimap<std::string, std::shared_ptr<InfoFetch>> info_fetches_;
  // Completes `fetch` (removed from info_fetches_) with `info`, caching a success.
  void finish_info_fetch(const std::string& key, const std::shared_ptr<InfoFetch>& fetch,
                         const Result<protocol::ExpertInfo>& info);
};

}  // namespace hivemind::client
