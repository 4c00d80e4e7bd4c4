#include <fmt/format.h>

#include <hivemind/averaging/torch_averager.h>

namespace hivemind::averaging {

namespace {

std::optional<quant::DType> floating_dtype(c10::ScalarType type) {
  switch (type) {
    case torch::kFloat:
      return quant::DType::kFloat32;
    case torch::kHalf:
      return quant::DType::kFloat16;
    case torch::kBFloat16:
      return quant::DType::kBFloat16;
    default:
      return std::nullopt;
  }
}

}  // namespace

Result<std::vector<TensorRef>> tensor_refs(const std::vector<torch::Tensor>& tensors) {
  std::vector<TensorRef> refs;
  refs.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    if (!t.defined()) return invalid_argument_error(fmt::format("tensor {} is undefined", i));
    if (t.layout() != torch::kStrided)
      return invalid_argument_error(fmt::format("tensor {} is not dense (sparse layout)", i));
    auto dtype = floating_dtype(t.scalar_type());
    if (!dtype) {
      return invalid_argument_error(
          fmt::format("tensor {} is {}; only float32, float16 and bfloat16 tensors are averaged", i,
                      std::string(c10::toString(t.scalar_type()))));
    }
    if (!t.is_contiguous()) {
      return invalid_argument_error(fmt::format(
          "tensor {} is not contiguous; the averager writes the mean into the tensor's own "
          "memory, so pass the contiguous tensor itself, not a view of it",
          i));
    }
    if (t.device() != tensors.front().device()) {
      return invalid_argument_error(fmt::format(
          "tensor {} is on {} but tensor 0 is on {}; one averager averages tensors of one device",
          i, t.device().str(), tensors.front().device().str()));
    }
    TensorRef ref;
    ref.data = t.data_ptr();
    ref.elements = static_cast<size_t>(t.numel());
    ref.dtype = *dtype;
    if (t.is_cuda()) {
      ref.memory = transport::MemoryType::kCuda;
      ref.device = t.device().index();
    } else if (!t.is_cpu()) {
      return invalid_argument_error(fmt::format(
          "tensor {} is on {}; only CPU and CUDA tensors are averaged", i, t.device().str()));
    }
    refs.push_back(ref);
  }
  return refs;
}

Result<std::unique_ptr<TorchAverager>> TorchAverager::create(std::vector<torch::Tensor> tensors,
                                                             AveragerOptions options) {
  HIVEMIND_ASSIGN_OR_RETURN(auto refs, tensor_refs(tensors));
  HIVEMIND_ASSIGN_OR_RETURN(auto averager, Averager::create(std::move(refs), std::move(options)));
  return std::unique_ptr<TorchAverager>(new TorchAverager(std::move(tensors), std::move(averager)));
}

}  // namespace hivemind::averaging
