// Batches from request bytes and replies from outputs: the codec side of the expert methods.
#include "wire_batch.h"

#include <numeric>

#include <fmt/format.h>

#include <hivemind/quant/codec.h>
#include <hivemind/quant/torch_codec.h>

namespace hivemind::server {

using runtime::TensorSchema;

namespace {

std::span<const uint8_t> bytes_of(const torch::Tensor& wire) {
  return {static_cast<const uint8_t*>(wire.data_ptr()), static_cast<size_t>(wire.numel())};
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

}  // namespace

torch::Tensor wrap_wire_bytes(const transport::Buffer& buffer) {
  transport::Buffer keep = buffer;
  return torch::from_blob(
      buffer.data(), {static_cast<int64_t>(buffer.size())},
      [keep](void*) mutable { keep = transport::Buffer(); },
      torch::TensorOptions().dtype(torch::kUInt8));
}

runtime::AssembleFn make_wire_assembler(std::vector<TensorSchema> schemas, torch::Device device,
                                        bool detect_anomalies, int cpu_threads, std::string what) {
  return
      [schemas = std::move(schemas), device, detect_anomalies, cpu_threads, what = std::move(what)](
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
            batch[i] = torch::empty(
                shape, torch::TensorOptions().dtype(runtime::torch_dtype(schemas[i].dtype)));
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
        // GPU experts: the encoded bytes go up and are dequantized on the device, then joined
        // there.
        std::vector<std::vector<torch::Tensor>> parts(schemas.size());
        for (size_t k = 0; k < tasks.size(); ++k) {
          std::vector<torch::Tensor> decoded;
          bool ok = true;
          for (size_t i = 0; ok && i < schemas.size(); ++i) {
            auto t = quant::decode_tensor(bytes_of(tasks[k][i]), device,
                                          runtime::torch_dtype(schemas[i].dtype),
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

}  // namespace hivemind::server
