#include <future>
#include <utility>

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/common/wait_interrupt.h>
#include <hivemind/quant/torch_codec.h>

namespace hivemind::client {
namespace {

std::string cache_key(const ExpertAddress& expert) {
  return expert.uid + "@" + expert.endpoint;
}

std::string describe(const ExpertAddress& expert) {
  return "expert '" + expert.uid + "' at " + expert.endpoint;
}

// A host buffer over an encoded tensor's bytes that keeps the tensor alive until the transport is
// done with it; a CUDA tensor is handed over as device memory (the transport stages or sends it).
transport::Buffer buffer_over(const torch::Tensor& encoded) {
  auto keep_alive = std::make_shared<torch::Tensor>(encoded);
  bool cuda = encoded.is_cuda();
  return transport::Buffer::wrap(encoded.data_ptr(), static_cast<size_t>(encoded.numel()),
                                 cuda ? transport::MemoryType::kCuda : transport::MemoryType::kHost,
                                 cuda ? encoded.get_device() : -1, std::move(keep_alive));
}

quant::EncodeOptions encode_options(const protocol::TensorSchema& schema) {
  quant::EncodeOptions options;
  options.scheme = schema.compression;
  options.block_size = schema.block_size;
  return options;
}

}  // namespace

std::shared_ptr<RpcExpertCaller> RpcExpertCaller::create(
    std::shared_ptr<transport::rpc::Client> rpc) {
  return std::shared_ptr<RpcExpertCaller>(new RpcExpertCaller(std::move(rpc)));
}

void RpcExpertCaller::info(const ExpertAddress& expert, Deadline deadline, InfoCallback done) {
  const std::string key = cache_key(expert);
  auto fetch = std::make_shared<InfoFetch>(InfoFetch{deadline, {}});
  std::optional<protocol::ExpertInfo> cached;
  {
    std::lock_guard lock(mutex_);
    if (auto it = info_cache_.find(key); it != info_cache_.end()) {
      cached = it->second;
    } else {
      auto [first, last] = info_fetches_.equal_range(key);
      for (auto it = first; it != last; ++it) {
        if (!(it->second->deadline < deadline)) {
          it->second->waiting.push_back(std::move(done));
          return;
        }
      }
      fetch->waiting.push_back(std::move(done));
      info_fetches_.emplace(key, fetch);
    }
  }
  if (cached) {  // `done` runs without the lock: it may call back into this caller
    done(std::move(*cached));
    return;
  }
  transport::Message request;
  request.metadata = protocol::encode_call(expert.uid);
  std::weak_ptr<RpcExpertCaller> weak = weak_from_this();
  auto finish = [weak, key, fetch](const Result<protocol::ExpertInfo>& info) {
    if (auto self = weak.lock()) {
      self->finish_info_fetch(key, fetch, info);
      return;
    }
    for (InfoCallback& waiting : fetch->waiting)  // the caller is gone: nobody can join any more
      waiting(info);
  };
  rpc_->call(expert.endpoint, protocol::kInfoMethod, std::move(request), deadline,
             [expert, finish](Result<transport::Message> reply) {
               if (!reply.is_ok()) {
                 finish(reply.status().with_context("info of " + describe(expert)));
                 return;
               }
               auto info = protocol::decode_expert_info(reply->metadata);
               if (!info.is_ok()) {
                 finish(info.status().with_context("info of " + describe(expert)));
                 return;
               }
               if (info->uid != expert.uid) {
                 finish(protocol_error("asked " + describe(expert) + " for its info, got '" +
                                       info->uid + "'"));
                 return;
               }
               finish(info);
             });
}

void RpcExpertCaller::finish_info_fetch(const std::string& key,
                                        const std::shared_ptr<InfoFetch>& fetch,
                                        const Result<protocol::ExpertInfo>& info) {
  std::vector<InfoCallback> waiting;
  {
    std::lock_guard lock(mutex_);
    auto [first, last] = info_fetches_.equal_range(key);
    for (auto it = first; it != last; ++it) {
      if (it->second == fetch) {
        info_fetches_.erase(it);
        break;
      }
    }
    if (info.is_ok()) info_cache_.emplace(key, *info);
    waiting.swap(fetch->waiting);  // no one joins a fetch once it left info_fetches_
  }
  for (InfoCallback& done : waiting)
    done(info);
}

Result<protocol::ExpertInfo> RpcExpertCaller::info(const ExpertAddress& expert, Deadline deadline) {
  auto promise = std::make_shared<std::promise<Result<protocol::ExpertInfo>>>();
  auto future = promise->get_future();
  info(expert, deadline,
       [promise](Result<protocol::ExpertInfo> r) { promise->set_value(std::move(r)); });
  // The RPC layer completes every call by its deadline; the extra second only covers scheduling.
  // The promise is shared with the callback, so a wait the interrupt hook abandons is safe.
  const SteadyTime give_up =
      deadline.is_never() ? SteadyTime::max() : deadline.at() + std::chrono::seconds(1);
  const bool ready = wait_polling_interrupt(give_up, [&](SteadyTime until) {
    if (until == SteadyTime::max()) {
      future.wait();
      return true;
    }
    return future.wait_until(until) == std::future_status::ready;
  });
  if (!ready) return timeout_error("info of " + describe(expert) + " did not complete");
  return future.get();
}

void RpcExpertCaller::forward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                              Deadline deadline, ExpertCallback done) {
  size_t num_inputs = inputs.size();
  call(expert, protocol::kForwardMethod, std::move(inputs), num_inputs, deadline, std::move(done));
}

void RpcExpertCaller::backward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                               std::vector<torch::Tensor> grad_outputs, Deadline deadline,
                               ExpertCallback done) {
  size_t num_inputs = inputs.size();
  for (auto& g : grad_outputs)
    inputs.push_back(std::move(g));
  call(expert, protocol::kBackwardMethod, std::move(inputs), num_inputs, deadline, std::move(done));
}

std::optional<protocol::ExpertInfo> RpcExpertCaller::cached_info(const ExpertAddress& expert) {
  std::lock_guard lock(mutex_);
  auto it = info_cache_.find(cache_key(expert));
  if (it == info_cache_.end()) return std::nullopt;
  return it->second;
}

void RpcExpertCaller::call(const ExpertAddress& expert, std::string_view method,
                           std::vector<torch::Tensor> tensors, size_t num_inputs, Deadline deadline,
                           ExpertCallback done) {
  std::string method_name(method);
  if (auto known = cached_info(expert)) {
    send(expert, method_name, std::move(tensors), num_inputs, *known, deadline, std::move(done));
    return;
  }
  auto self = shared_from_this();
  info(expert, deadline,
       [self, expert, method_name, tensors = std::move(tensors), num_inputs, deadline,
        done = std::move(done)](Result<protocol::ExpertInfo> info) mutable {
         if (!info.is_ok()) {
           done(info.status());
           return;
         }
         // We are on the transport's I/O thread: encoding is tensor math, so it moves to LibTorch's
         // inter-op pool.
         at::launch([self, expert, method_name, tensors = std::move(tensors), num_inputs,
                     info = std::move(*info), deadline, done = std::move(done)]() mutable {
           self->send(expert, method_name, std::move(tensors), num_inputs, info, deadline,
                      std::move(done));
         });
       });
}

void RpcExpertCaller::send(const ExpertAddress& expert, const std::string& method_name,
                           std::vector<torch::Tensor> tensors, size_t num_inputs,
                           const protocol::ExpertInfo& info, Deadline deadline,
                           ExpertCallback done) {
  bool backward = method_name == protocol::kBackwardMethod;
  size_t expected = backward ? info.inputs.size() + info.outputs.size() : info.inputs.size();
  if (tensors.size() != expected || num_inputs != info.inputs.size()) {
    done(invalid_argument_error(describe(expert) + " takes " + std::to_string(info.inputs.size()) +
                                " input(s) and " + std::to_string(info.outputs.size()) +
                                " output(s); the " + method_name + " call passed " +
                                std::to_string(tensors.size()) + " tensor(s)"));
    return;
  }
  transport::Message request;
  request.metadata = protocol::encode_call(expert.uid);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& schema = i < num_inputs ? info.inputs[i] : info.outputs[i - num_inputs];
    auto encoded = quant::encode_tensor(tensors[i].detach(), encode_options(schema));
    if (!encoded.is_ok()) {
      done(encoded.status().with_context(method_name + " to " + describe(expert) + ", tensor " +
                                         std::to_string(i)));
      return;
    }
    request.tensors.push_back(buffer_over(*encoded));
  }
  // Answers come back on the inputs' device: input gradients in their inputs' dtypes, outputs in
  // answer_dtype's.
  torch::Device device = tensors.empty() ? torch::Device(torch::kCPU) : tensors[0].device();
  std::vector<c10::ScalarType> dtypes;
  if (backward) {
    for (size_t i = 0; i < num_inputs; ++i)
      dtypes.push_back(tensors[i].scalar_type());
  } else {
    for (const protocol::TensorSchema& output : info.outputs)
      dtypes.push_back(answer_dtype(output.dtype, tensors));
  }
  rpc_->call(
      expert.endpoint, method_name, std::move(request), deadline,
      [expert, method_name, device, dtypes = std::move(dtypes),
       done = std::move(done)](Result<transport::Message> reply) mutable {
        if (!reply.is_ok()) {
          done(reply.status().with_context(method_name + " of " + describe(expert)));
          return;
        }
        if (reply->tensors.size() != dtypes.size()) {
          done(protocol_error(describe(expert) + " answered " + method_name + " with " +
                              std::to_string(reply->tensors.size()) + " tensor(s), expected " +
                              std::to_string(dtypes.size())));
          return;
        }
        // Raw answers bound for the CPU (compression none, the wanted dtype) become views of the
        // received buffers right here: no copy and no tensor math, and no hop to another thread.
        // Anything to dequantize, convert or upload is tensor math: off the I/O thread.
        bool views_only = device.is_cpu();
        for (size_t i = 0; views_only && i < reply->tensors.size(); ++i) {
          const transport::Buffer& b = reply->tensors[i];
          views_only = b.is_host() && quant::decode_aliases(b.bytes(), dtypes[i]);
        }
        auto decode_all = [expert, method_name, device, dtypes = std::move(dtypes),
                           message = std::move(*reply), done = std::move(done)]() mutable {
          std::vector<torch::Tensor> decoded;
          decoded.reserve(message.tensors.size());
          for (size_t i = 0; i < message.tensors.size(); ++i) {
            const transport::Buffer& b = message.tensors[i];
            auto tensor = device.is_cpu() && b.is_host()
                              ? quant::decode_tensor_borrowing(
                                    b.bytes(), std::make_shared<transport::Buffer>(b), dtypes[i])
                              : quant::decode_tensor(b.bytes(), device, dtypes[i]);
            if (!tensor.is_ok()) {
              done(tensor.status().with_context(method_name + " answer of " + describe(expert)));
              return;
            }
            decoded.push_back(std::move(*tensor));
          }
          done(std::move(decoded));
        };
        if (views_only)
          decode_all();
        else
          at::launch(std::move(decode_all));
      });
}

}  // namespace hivemind::client
