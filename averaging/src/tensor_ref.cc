#include <fmt/format.h>

#include <hivemind/averaging/tensor_ref.h>

namespace hivemind::averaging {

Status check_round_tensors(std::span<const TensorRef> tensors) {
  if (tensors.empty()) return invalid_argument_error("averaging needs at least one tensor");
  const TensorRef& first = tensors.front();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorRef& t = tensors[i];
    if (!quant::is_floating(t.dtype)) {
      return invalid_argument_error(fmt::format(
          "tensor {} has a {} dtype; only float32, float16 and bfloat16 tensors are averaged", i,
          quant::dtype_name(t.dtype)));
    }
    if (t.elements == 0) return invalid_argument_error(fmt::format("tensor {} is empty", i));
    if (t.data == nullptr) return invalid_argument_error(fmt::format("tensor {} has no data", i));
    if (t.memory != first.memory || t.device != first.device) {
      return invalid_argument_error(fmt::format(
          "tensor {} is on {} device {} but tensor 0 is on {} device {}; one round averages "
          "tensors of one device",
          i, t.memory == transport::MemoryType::kCuda ? "cuda" : "host", t.device,
          first.memory == transport::MemoryType::kCuda ? "cuda" : "host", first.device));
    }
  }
  return Status::ok();
}

uint64_t total_bytes(std::span<const TensorRef> tensors) {
  uint64_t sum = 0;
  for (const TensorRef& t : tensors)
    sum += t.bytes();
  return sum;
}

}  // namespace hivemind::averaging
