// A raw expert-RPC client for the server tests: encodes tensors with quant, calls over the
// transport.
#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/types.h>

#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/quant/torch_codec.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/worker.h>

namespace hivemind::server::testing {

using namespace std::chrono_literals;

// The bytes of an encoding as a transport buffer that keeps the encoded tensor alive.
inline transport::Buffer encode(const torch::Tensor& t,
                                quant::Scheme scheme = quant::Scheme::kNone) {
  quant::EncodeOptions o;
  o.scheme = scheme;
  auto encoded = std::make_shared<torch::Tensor>(quant::encode_tensor(t, o).value());
  return transport::Buffer::wrap(encoded->data_ptr(), static_cast<size_t>(encoded->numel()),
                                 transport::MemoryType::kHost, -1, encoded);
}

inline torch::Tensor decode(const transport::Buffer& b) {
  return quant::decode_tensor(
             std::span<const uint8_t>(static_cast<const uint8_t*>(b.data()), b.size()))
      .value();
}

class RawClient {
 public:
  // `swarm_key`: a member of a keyed swarm; none: a keyless client.
  explicit RawClient(std::shared_ptr<const transport::SwarmKey> swarm_key = nullptr) {
    transport::ContextOptions options;
    options.spin = std::chrono::microseconds(0);
    options.auth.swarm_key = std::move(swarm_key);
    context_ = transport::Context::create(options).value();
    worker_ = transport::Worker::create(context_, "test-cli").value();
    client_ = transport::rpc::Client::create(worker_);
  }
  ~RawClient() {
    client_.reset();
    worker_->stop();
  }

  std::future<Result<transport::Message>> call_async(const std::string& address,
                                                     std::string_view method,
                                                     const std::string& uid,
                                                     std::vector<transport::Buffer> tensors) {
    transport::Message m;
    m.metadata = protocol::encode_call(uid);
    m.tensors = std::move(tensors);
    return client_->call(address, method, std::move(m), Deadline::after(60s));
  }

  Result<transport::Message> call(const std::string& address, std::string_view method,
                                  const std::string& uid,
                                  std::vector<transport::Buffer> tensors = {}) {
    auto f = call_async(address, method, uid, std::move(tensors));
    if (f.wait_for(90s) != std::future_status::ready)
      return timeout_error("test call did not complete");
    return f.get();
  }

  // forward/backward with plain tensors; returns the decoded outputs.
  Result<std::vector<torch::Tensor>> tensors(const std::string& address, std::string_view method,
                                             const std::string& uid,
                                             const std::vector<torch::Tensor>& in,
                                             quant::Scheme scheme = quant::Scheme::kNone) {
    std::vector<transport::Buffer> buffers;
    for (const auto& t : in)
      buffers.push_back(encode(t, scheme));
    auto reply = call(address, method, uid, std::move(buffers));
    if (!reply.is_ok()) return reply.status();
    std::vector<torch::Tensor> out;
    for (const auto& b : reply->tensors)
      out.push_back(decode(b));
    return out;
  }

 private:
  std::shared_ptr<transport::Context> context_;
  std::shared_ptr<transport::Worker> worker_;
  std::shared_ptr<transport::rpc::Client> client_;
};

}  // namespace hivemind::server::testing
