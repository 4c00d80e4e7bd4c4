// The RPC half of the server: request validation on the I/O thread, batch assembly from wire bytes
// and output encoding on the compute thread.
#include <numeric>

#include <fmt/format.h>
#include <torch/types.h>

#include <hivemind/common/logging.h>
#include <hivemind/quant/codec.h>
#include <hivemind/quant/torch_codec.h>
#include <hivemind/transport/buffer.h>

#include "server_impl.h"

namespace hivemind::runtime {

namespace {

std::span<const uint8_t> bytes_of(const torch::Tensor& wire) {
  return {static_cast<const uint8_t*>(wire.data_ptr()), static_cast<size_t>(wire.numel())};
}

// A request tensor's bytes as a uint8 CPU tensor that keeps the transport buffer alive: no copy.
torch::Tensor wrap(const transport::Buffer& buffer) {
  transport::Buffer keep = buffer;
  return torch::from_blob(
      buffer.data(), {static_cast<int64_t>(buffer.size())},
      [keep](void*) mutable { keep = transport::Buffer(); },
      torch::TensorOptions().dtype(torch::kUInt8));
}

int64_t per_sample(const TensorSchema& s) {
  return std::accumulate(s.shape.begin(), s.shape.end(), int64_t{1}, std::multiplies<>());
}

quant::DecodeLimits limits_for(const TensorSchema& s, int64_t max_batch) {
  quant::DecodeLimits limits;
  limits.max_ndim = static_cast<uint32_t>(s.shape.size() + 1);
  limits.max_numel =
      static_cast<uint64_t>(std::max<int64_t>(1, per_sample(s))) * static_cast<uint64_t>(max_batch);
  return limits;
}

// Every output of one task, encoded with its schema's compression into fresh host buffers.
Result<transport::Message> encode_outputs(const std::vector<torch::Tensor>& outputs,
                                          const std::vector<TensorSchema>& schemas,
                                          int cpu_threads) {
  if (outputs.size() != schemas.size()) {
    return internal_error(fmt::format("{} outputs for {} schemas", outputs.size(), schemas.size()));
  }
  transport::Message message;
  message.tensors.reserve(outputs.size());
  try {
    for (size_t j = 0; j < outputs.size(); ++j) {
      quant::EncodeOptions opt;
      const bool is_float = c10::isFloatingType(outputs[j].scalar_type());
      opt.scheme = is_float ? schemas[j].compression : quant::Scheme::kNone;
      opt.block_size = schemas[j].block_size;
      opt.cpu.num_threads = cpu_threads;
      HIVEMIND_ASSIGN_OR_RETURN(size_t size, quant::encoded_size(outputs[j], opt));
      transport::Buffer buffer = transport::Buffer::allocate_host(size);
      HIVEMIND_RETURN_IF_ERROR(quant::encode_tensor_into(outputs[j], opt, buffer.bytes())
                                   .with_context(fmt::format("output {}", j)));
      message.tensors.push_back(std::move(buffer));
    }
  } catch (const c10::Error& e) {
    return internal_error(fmt::format("encoding outputs: {}", e.what_without_backtrace()));
  }
  return message;
}

}  // namespace

AssembleFn make_wire_assembler(std::vector<TensorSchema> schemas, torch::Device device,
                               bool detect_anomalies, int cpu_threads, std::string what) {
  return [schemas = std::move(schemas), device, detect_anomalies, cpu_threads,
          what = std::move(what)](
             std::span<std::vector<torch::Tensor>> tasks, std::span<const int64_t> sizes,
             std::span<Status> rejected) -> Result<std::vector<torch::Tensor>> {
    const int64_t rows = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
    std::vector<torch::Tensor> batch(schemas.size());
    auto anomaly = [&](size_t k, size_t i, const torch::Tensor& t) -> bool {
      if (!detect_anomalies || !c10::isFloatingType(t.scalar_type()) || t.numel() == 0)
        return false;
      if (torch::isfinite(t).all().item<bool>()) return false;
      rejected[k] = invalid_argument_error(
          fmt::format("{} tensor {} contains NaN or Inf (detect_anomalies is on)", what, i));
      return true;
    };
    if (device.is_cpu()) {
      // Dequantize every task straight into its rows of the batch: no concatenation copy.
      for (size_t i = 0; i < schemas.size(); ++i) {
        std::vector<int64_t> shape{rows};
        shape.insert(shape.end(), schemas[i].shape.begin(), schemas[i].shape.end());
        batch[i] = torch::empty(shape, torch::TensorOptions().dtype(torch_dtype(schemas[i].dtype)));
      }
      quant::CpuOptions cpu;
      cpu.num_threads = cpu_threads;
      int64_t offset = 0;
      for (size_t k = 0; k < tasks.size(); ++k) {
        bool ok = true;
        for (size_t i = 0; ok && i < schemas.size(); ++i) {
          torch::Tensor rows_k = batch[i].narrow(0, offset, sizes[k]);
          const size_t nbytes = static_cast<size_t>(rows_k.numel()) * rows_k.element_size();
          Status s = quant::decode(bytes_of(tasks[k][i]), schemas[i].dtype,
                                   {static_cast<uint8_t*>(rows_k.data_ptr()), nbytes},
                                   limits_for(schemas[i], sizes[k]), cpu);
          if (!s.is_ok()) {
            rejected[k] = s.with_context(fmt::format("{} tensor {}", what, i));
            ok = false;
          } else if (anomaly(k, i, rows_k)) {
            ok = false;
          }
        }
        if (ok) offset += sizes[k];  // a rejected task's rows are overwritten by the next one
      }
      for (auto& t : batch)
        t = t.narrow(0, 0, offset);
      return batch;
    }
    // GPU experts: the encoded bytes go up and are dequantized on the device, then joined there.
    std::vector<std::vector<torch::Tensor>> parts(schemas.size());
    for (size_t k = 0; k < tasks.size(); ++k) {
      std::vector<torch::Tensor> decoded;
      bool ok = true;
      for (size_t i = 0; ok && i < schemas.size(); ++i) {
        auto t = quant::decode_tensor(bytes_of(tasks[k][i]), device, torch_dtype(schemas[i].dtype),
                                      limits_for(schemas[i], sizes[k]));
        if (!t.is_ok()) {
          rejected[k] = t.status().with_context(fmt::format("{} tensor {}", what, i));
          ok = false;
        } else if (anomaly(k, i, *t)) {
          ok = false;
        } else {
          decoded.push_back(std::move(t).value());
        }
      }
      if (!ok) continue;
      for (size_t i = 0; i < schemas.size(); ++i)
        parts[i].push_back(std::move(decoded[i]));
    }
    for (size_t i = 0; i < schemas.size(); ++i) {
      if (parts[i].empty()) {
        batch[i] = torch::empty({0}, torch::TensorOptions().device(device));
      } else {
        batch[i] = parts[i].size() == 1 ? parts[i][0] : torch::cat(parts[i], 0);
      }
    }
    return batch;
  };
}

void Server::Impl::handle_info(transport::Message request, transport::rpc::Responder responder) {
  auto uid = protocol::decode_call(request.metadata);
  if (!uid.is_ok()) return responder.reply(uid.status().with_context("info request"));
  auto it = experts.find(*uid);
  if (it == experts.end()) {
    return responder.reply(
        not_found_error(fmt::format("this server does not host expert '{}'", *uid)));
  }
  transport::Message reply;
  reply.metadata = protocol::encode_expert_info(it->second.info);
  responder.reply(std::move(reply));
}

void Server::Impl::handle_call(bool backward, transport::Message request,
                               transport::rpc::Responder responder) {
  const SteadyTime arrived = SteadyClock::now();
  const char* method = backward ? "backward" : "forward";
  auto uid = protocol::decode_call(request.metadata);
  if (!uid.is_ok())
    return responder.reply(uid.status().with_context(fmt::format("{} request", method)));
  auto it = experts.find(*uid);
  if (it == experts.end()) {
    return responder.reply(
        not_found_error(fmt::format("this server does not host expert '{}'", *uid)));
  }
  const HostedExpert& expert = it->second;
  const CallMetrics& metrics = backward ? expert.backward_metrics : expert.forward_metrics;
  metrics.requests->inc();
  auto fail = [&](Status status) {
    metrics.finished(false, arrived);
    responder.reply(std::move(status));
  };
  if (draining.load())
    return fail(unavailable_error("the server is shutting down and accepts no new requests"));
  const std::vector<TensorSchema>& schemas = backward ? expert.backward_in : expert.forward_in;
  const std::string what = fmt::format("expert '{}' {}", *uid, method);
  if (request.tensors.size() != schemas.size()) {
    return fail(invalid_argument_error(fmt::format(
        "{}: got {} tensor(s), expected {}{}", what, request.tensors.size(), schemas.size(),
        backward ? " (the inputs, then one gradient per output)" : "")));
  }
  // Headers only here (cheap, and everything is validated before any byte is trusted); the payloads
  // are dequantized by the compute thread, straight into the batch.
  int64_t batch = -1;
  std::vector<torch::Tensor> wire;
  wire.reserve(schemas.size());
  for (size_t i = 0; i < schemas.size(); ++i) {
    const transport::Buffer& buffer = request.tensors[i];
    if (!buffer.is_host())
      return fail(unsupported_error(fmt::format("{}: tensor {} is not in host memory", what, i)));
    const TensorSchema& s = schemas[i];
    // The bytes have arrived already; the header is checked against them. Too many samples gets its
    // own message below rather than a codec limit error.
    quant::DecodeLimits limits;
    limits.max_ndim = static_cast<uint32_t>(s.shape.size() + 1);
    auto header =
        quant::decode_header({static_cast<const uint8_t*>(buffer.data()), buffer.size()}, limits);
    if (!header.is_ok())
      return fail(header.status().with_context(fmt::format("{} tensor {}", what, i)));
    bool shape_ok = header->shape.size() == s.shape.size() + 1;
    for (size_t d = 0; shape_ok && d < s.shape.size(); ++d)
      shape_ok = header->shape[d + 1] == s.shape[d];
    if (!shape_ok || !quant::decodable_as(*header, s.dtype)) {
      return fail(invalid_argument_error(fmt::format(
          "{} tensor {}: got {}[{}], expected {}", what, i, quant::dtype_name(header->src_dtype),
          fmt::join(header->shape, ", "), schema_string(s))));
    }
    if (batch < 0) batch = header->shape[0];
    if (batch > options.max_batch_size) {
      return fail(
          invalid_argument_error(fmt::format("{}: the request has {} samples, more than "
                                             "max_batch_size={}; split it into smaller requests",
                                             what, batch, options.max_batch_size)));
    }
    if (header->shape[0] != batch) {
      return fail(
          invalid_argument_error(fmt::format("{} tensor {} has batch size {}, but tensor 0 has {}",
                                             what, i, header->shape[0], batch)));
    }
    wire.push_back(wrap(buffer));
  }
  const std::vector<TensorSchema>& out_schemas =
      backward ? expert.forward_in : expert.backend->output_schema();
  auto shared = std::make_shared<transport::rpc::Responder>(std::move(responder));
  const int threads = options.intra_op_threads;
  // `expert` lives as long as the server, which outlives every task (shutdown drains the pools).
  TaskDone done = [shared, &out_schemas, &metrics, arrived, threads](TaskResult result) {
    Result<transport::Message> reply = result.is_ok()
                                           ? encode_outputs(*result, out_schemas, threads)
                                           : Result<transport::Message>(result.status());
    metrics.finished(reply.is_ok(), arrived);
    shared->reply(std::move(reply));
  };
  TaskPool& pool = backward ? *expert.backward : *expert.forward;
  Status submitted = pool.submit(std::move(wire), batch, std::move(done));
  if (!submitted.is_ok()) {
    metrics.finished(false, arrived);
    return shared->reply(submitted);
  }
  logger("runtime")->debug("{}: queued {} sample(s)", what, batch);
}

}  // namespace hivemind::runtime
