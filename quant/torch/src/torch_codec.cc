#include <atomic>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include <hivemind/common/logging.h>
#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/torch_codec.h>

#ifdef HIVEMIND_QUANT_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <hivemind/quant/cuda_kernels.h>
#endif

namespace hivemind::quant {
namespace {

std::span<const int64_t> shape_of(const torch::Tensor& t) {
  return {t.sizes().data(), t.sizes().size()};
}

std::vector<int64_t> shape_vector(const DecodedHeader& h) {
  return h.shape;
}

Status check_layout(const torch::Tensor& t) {
  if (!t.defined()) return invalid_argument_error("quant: undefined tensor");
  if (t.is_sparse() || t.is_quantized())
    return invalid_argument_error("quant: sparse or quantized tensors are not supported");
  return Status::ok();
}

void warn_host_round_trip_once() {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    logger("quant")->warn(
        "quant_torch: built without the CUDA kernels (or with a CPU LibTorch): CUDA tensors are "
        "encoded and "
        "decoded through host memory");
  }
}

Result<DType> out_dtype_for(const DecodedHeader& h, std::optional<c10::ScalarType> requested) {
  DType out = h.src_dtype;
  if (requested) {
    HIVEMIND_ASSIGN_OR_RETURN(out, dtype_from_torch(*requested));
  }
  if (!decodable_as(h, out)) {
    return invalid_argument_error(fmt::format("quant: a {} tensor cannot be decoded as {}",
                                              dtype_name(h.src_dtype), dtype_name(out)));
  }
  return out;
}

Result<torch::Tensor> decode_host(std::span<const uint8_t> encoded,
                                  std::optional<c10::ScalarType> dtype,
                                  const DecodeLimits& limits) {
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h, decode_header(encoded, limits));
  HIVEMIND_ASSIGN_OR_RETURN(DType out, out_dtype_for(h, dtype));
  torch::Tensor result =
      torch::empty(shape_vector(h), torch::TensorOptions().dtype(dtype_to_torch(out)));
  auto* bytes = static_cast<uint8_t*>(result.data_ptr());
  HIVEMIND_RETURN_IF_ERROR(decode(h, encoded, out, {bytes, h.numel * dtype_size(out)}));
  if (h.requires_grad && is_floating(out)) result.set_requires_grad(true);
  return result;
}

#ifdef HIVEMIND_QUANT_TORCH_CUDA
Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::ok();
  return internal_error(fmt::format("quant_torch: {}: {}", what, cudaGetErrorString(err)));
}

Result<torch::Tensor> encode_cuda(const torch::Tensor& contiguous, DType dtype,
                                  const EncodeOptions& options, bool requires_grad) {
  c10::cuda::CUDAGuard guard(contiguous.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(contiguous.device().index()).stream();
  auto* s = reinterpret_cast<cuda::Stream>(stream);
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h,
                            plan_encoding(dtype, shape_of(contiguous), requires_grad, options));
  torch::Tensor out = torch::empty({static_cast<int64_t>(h.total_bytes)},
                                   contiguous.options().dtype(torch::kUInt8));
  auto* o = static_cast<uint8_t*>(out.data_ptr());
  std::vector<uint8_t> header(h.scales_offset);
  HIVEMIND_RETURN_IF_ERROR(
      write_header(dtype, shape_of(contiguous), requires_grad, options, header));
  HIVEMIND_RETURN_IF_ERROR(
      cuda_status(cudaMemcpyAsync(o, header.data(), header.size(), cudaMemcpyHostToDevice, stream),
                  "header upload"));
  // Padding between the sections must be zero, as on the CPU path.
  HIVEMIND_RETURN_IF_ERROR(cuda_status(
      cudaMemsetAsync(o + h.scales_offset, 0, h.payload_offset - h.scales_offset, stream),
      "padding"));
  const void* in = contiguous.data_ptr();
  uint8_t* payload = o + h.payload_offset;
  switch (h.scheme) {
    case Scheme::kNone:
      if (h.payload_bytes > 0) {
        HIVEMIND_RETURN_IF_ERROR(cuda_status(
            cudaMemcpyAsync(payload, in, h.payload_bytes, cudaMemcpyDeviceToDevice, stream),
            "payload copy"));
      }
      break;
    case Scheme::kFloat16:
      HIVEMIND_RETURN_IF_ERROR(
          cuda::convert(in, dtype, h.numel, payload, DType::kFloat16, true, s));
      break;
    case Scheme::kBFloat16:
      HIVEMIND_RETURN_IF_ERROR(
          cuda::convert(in, dtype, h.numel, payload, DType::kBFloat16, false, s));
      break;
    default: {
      torch::Tensor workspace = torch::empty({static_cast<int64_t>(cuda::kWorkspaceBytes)},
                                             contiguous.options().dtype(torch::kUInt8));
      uint8_t* zps = h.scheme == Scheme::kBlockAffineU8 ? o + h.zero_points_offset : nullptr;
      HIVEMIND_RETURN_IF_ERROR(cuda::quantize(in, dtype, h.numel, h.scheme, options.block_size,
                                              reinterpret_cast<float*>(o + h.scales_offset), zps,
                                              payload, workspace.data_ptr(), s));
      HIVEMIND_RETURN_IF_ERROR(
          cuda::finish_quantize(workspace.data_ptr(), h.scheme, h.numel, options.block_size, s));
      break;
    }
  }
  return out;
}

Result<torch::Tensor> decode_cuda(const torch::Tensor& encoded,
                                  std::optional<c10::ScalarType> dtype,
                                  const DecodeLimits& limits) {
  torch::Tensor enc = encoded;
  // The kernels read scales as floats and codes as 16-byte vectors: the buffer must start aligned.
  if (reinterpret_cast<uintptr_t>(enc.data_ptr()) % 16 != 0) enc = enc.clone();
  c10::cuda::CUDAGuard guard(enc.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(enc.device().index()).stream();
  auto* s = reinterpret_cast<cuda::Stream>(stream);
  const auto* e = static_cast<const uint8_t*>(enc.data_ptr());
  const uint64_t total = static_cast<uint64_t>(enc.numel());
  std::vector<uint8_t> prefix(std::min<uint64_t>(total, kFixedHeaderBytes));
  HIVEMIND_RETURN_IF_ERROR(
      cuda_status(cudaMemcpyAsync(prefix.data(), e, prefix.size(), cudaMemcpyDeviceToHost, stream),
                  "header download"));
  HIVEMIND_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream), "header download"));
  HIVEMIND_ASSIGN_OR_RETURN(uint64_t extent, header_extent(prefix, total, limits));
  prefix.resize(extent);
  HIVEMIND_RETURN_IF_ERROR(
      cuda_status(cudaMemcpyAsync(prefix.data(), e, extent, cudaMemcpyDeviceToHost, stream),
                  "scales download"));
  HIVEMIND_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream), "scales download"));
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h, decode_header(prefix, total, limits));
  HIVEMIND_ASSIGN_OR_RETURN(DType out, out_dtype_for(h, dtype));
  torch::Tensor result = torch::empty(shape_vector(h), enc.options().dtype(dtype_to_torch(out)));
  void* o = result.data_ptr();
  const uint8_t* payload = e + h.payload_offset;
  if (h.numel > 0) {
    switch (h.scheme) {
      case Scheme::kNone:
        if (out == h.src_dtype) {
          HIVEMIND_RETURN_IF_ERROR(cuda_status(
              cudaMemcpyAsync(o, payload, h.payload_bytes, cudaMemcpyDeviceToDevice, stream),
              "payload copy"));
        } else {
          HIVEMIND_RETURN_IF_ERROR(cuda::convert(payload, h.src_dtype, h.numel, o, out, false, s));
        }
        break;
      case Scheme::kFloat16:
        HIVEMIND_RETURN_IF_ERROR(
            cuda::convert(payload, DType::kFloat16, h.numel, o, out, false, s));
        break;
      case Scheme::kBFloat16:
        HIVEMIND_RETURN_IF_ERROR(
            cuda::convert(payload, DType::kBFloat16, h.numel, o, out, false, s));
        break;
      default: {
        const uint8_t* zps =
            h.scheme == Scheme::kBlockAffineU8 ? e + h.zero_points_offset : nullptr;
        HIVEMIND_RETURN_IF_ERROR(
            cuda::dequantize(payload, reinterpret_cast<const float*>(e + h.scales_offset), zps,
                             h.numel, h.scheme, h.block_size, o, out, s));
        break;
      }
    }
  }
  if (h.requires_grad && is_floating(out)) result.set_requires_grad(true);
  return result;
}
#endif

}  // namespace

bool torch_cuda_on_device() {
#ifdef HIVEMIND_QUANT_TORCH_CUDA
  return true;
#else
  return false;
#endif
}

Result<DType> dtype_from_torch(c10::ScalarType type) {
  switch (type) {
    case torch::kFloat32:
      return DType::kFloat32;
    case torch::kFloat16:
      return DType::kFloat16;
    case torch::kBFloat16:
      return DType::kBFloat16;
    case torch::kInt64:
      return DType::kInt64;
    case torch::kInt32:
      return DType::kInt32;
    case torch::kUInt8:
      return DType::kUInt8;
    case torch::kBool:
      return DType::kBool;
    default:
      return invalid_argument_error(
          fmt::format("quant: unsupported tensor dtype {}", c10::toString(type)));
  }
}

c10::ScalarType dtype_to_torch(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return torch::kFloat32;
    case DType::kFloat16:
      return torch::kFloat16;
    case DType::kBFloat16:
      return torch::kBFloat16;
    case DType::kInt64:
      return torch::kInt64;
    case DType::kInt32:
      return torch::kInt32;
    case DType::kUInt8:
      return torch::kUInt8;
    case DType::kBool:
      return torch::kBool;
  }
  return torch::kFloat32;
}

Result<size_t> encoded_size(const torch::Tensor& tensor, const EncodeOptions& options) {
  HIVEMIND_RETURN_IF_ERROR(check_layout(tensor));
  HIVEMIND_ASSIGN_OR_RETURN(DType dtype, dtype_from_torch(tensor.scalar_type()));
  return encoded_size(dtype, shape_of(tensor), options);
}

Status encode_tensor_into(const torch::Tensor& tensor, const EncodeOptions& options,
                          std::span<uint8_t> out) {
  HIVEMIND_RETURN_IF_ERROR(check_layout(tensor));
  HIVEMIND_ASSIGN_OR_RETURN(DType dtype, dtype_from_torch(tensor.scalar_type()));
  if (tensor.is_cuda()) {
    HIVEMIND_ASSIGN_OR_RETURN(torch::Tensor encoded, encode_tensor(tensor, options));
    if (out.size() < static_cast<size_t>(encoded.numel())) {
      return invalid_argument_error("quant: output buffer smaller than the encoding");
    }
    torch::Tensor host = torch::from_blob(out.data(), {encoded.numel()}, torch::kUInt8);
    host.copy_(encoded);  // device -> host of the encoded bytes only
    return Status::ok();
  }
  torch::Tensor c = tensor.contiguous();
  TensorView view{c.data_ptr(), dtype, shape_of(c), c.requires_grad()};
  return encode(view, options, out);
}

Result<torch::Tensor> encode_tensor(const torch::Tensor& tensor, const EncodeOptions& options) {
  HIVEMIND_RETURN_IF_ERROR(check_layout(tensor));
  HIVEMIND_ASSIGN_OR_RETURN(DType dtype, dtype_from_torch(tensor.scalar_type()));
  // Detached: encoding reads values, it is not part of the autograd graph.
  torch::Tensor c = tensor.detach().contiguous();
  if (c.is_cuda()) {
#ifdef HIVEMIND_QUANT_TORCH_CUDA
    return encode_cuda(c, dtype, options, tensor.requires_grad());
#else
    warn_host_round_trip_once();
    HIVEMIND_ASSIGN_OR_RETURN(torch::Tensor host, encode_tensor(tensor.cpu(), options));
    return host.to(tensor.device());
#endif
  }
  HIVEMIND_ASSIGN_OR_RETURN(size_t size, encoded_size(dtype, shape_of(c), options));
  torch::Tensor out =
      torch::empty({static_cast<int64_t>(size)}, torch::TensorOptions().dtype(torch::kUInt8));
  TensorView view{c.data_ptr(), dtype, shape_of(c), tensor.requires_grad()};
  HIVEMIND_RETURN_IF_ERROR(encode(view, options, {static_cast<uint8_t*>(out.data_ptr()), size}));
  return out;
}

Result<torch::Tensor> decode_tensor(std::span<const uint8_t> encoded, torch::Device device,
                                    std::optional<c10::ScalarType> dtype,
                                    const DecodeLimits& limits) {
  if (device.is_cpu()) return decode_host(encoded, dtype, limits);
  if (!device.is_cuda())
    return invalid_argument_error("quant: decode supports CPU and CUDA devices");
#ifdef HIVEMIND_QUANT_TORCH_CUDA
  // Validate on the host first so malformed bytes never reach the device.
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h, decode_header(encoded, limits));
  (void)h;
  torch::Tensor host = torch::from_blob(const_cast<uint8_t*>(encoded.data()),
                                        {static_cast<int64_t>(encoded.size())}, torch::kUInt8);
  return decode_tensor(host.to(device), dtype, limits);
#else
  warn_host_round_trip_once();
  HIVEMIND_ASSIGN_OR_RETURN(torch::Tensor cpu, decode_host(encoded, dtype, limits));
  bool rg = cpu.requires_grad();
  torch::Tensor moved = cpu.detach().to(device);
  if (rg) moved.set_requires_grad(true);
  return moved;
#endif
}

namespace {
// The header when decoding `encoded` as `dtype` is a view of its payload; nullopt otherwise.
std::optional<DecodedHeader> aliasable_header(std::span<const uint8_t> encoded,
                                              std::optional<c10::ScalarType> dtype,
                                              const DecodeLimits& limits) {
  auto h = decode_header(encoded, limits);
  if (!h.is_ok() || h->scheme != Scheme::kNone) return std::nullopt;
  auto out = out_dtype_for(*h, dtype);
  if (!out.is_ok() || *out != h->src_dtype) return std::nullopt;
  const auto address = reinterpret_cast<uintptr_t>(encoded.data() + h->payload_offset);
  if (address % dtype_size(*out) != 0) return std::nullopt;
  return std::move(h).value();
}
}  // namespace

bool decode_aliases(std::span<const uint8_t> encoded, std::optional<c10::ScalarType> dtype,
                    const DecodeLimits& limits) {
  return aliasable_header(encoded, dtype, limits).has_value();
}

Result<torch::Tensor> decode_tensor_borrowing(std::span<uint8_t> encoded,
                                              std::shared_ptr<void> owner,
                                              std::optional<c10::ScalarType> dtype,
                                              const DecodeLimits& limits) {
  auto h = aliasable_header(encoded, dtype, limits);
  if (!h) return decode_host(encoded, dtype, limits);
  torch::Tensor view;
  try {
    view = torch::from_blob(
        encoded.data() + h->payload_offset, shape_vector(*h),
        [owner = std::move(owner)](void*) mutable { owner.reset(); },
        torch::TensorOptions().dtype(dtype_to_torch(h->src_dtype)));
  } catch (const c10::Error& e) {
    return internal_error(
        fmt::format("quant: viewing a decoded tensor: {}", e.what_without_backtrace()));
  }
  if (h->requires_grad && is_floating(h->src_dtype)) view.set_requires_grad(true);
  return view;
}

Result<torch::Tensor> decode_tensor(const torch::Tensor& encoded,
                                    std::optional<c10::ScalarType> dtype,
                                    const DecodeLimits& limits) {
  HIVEMIND_RETURN_IF_ERROR(check_layout(encoded));
  if (encoded.scalar_type() != torch::kUInt8 || encoded.dim() != 1) {
    return invalid_argument_error("quant: an encoding is a 1-D uint8 tensor");
  }
  torch::Tensor c = encoded.contiguous();
  if (c.is_cuda()) {
#ifdef HIVEMIND_QUANT_TORCH_CUDA
    return decode_cuda(c, dtype, limits);
#else
    warn_host_round_trip_once();
    HIVEMIND_ASSIGN_OR_RETURN(torch::Tensor cpu, decode_tensor(c.cpu(), dtype, limits));
    bool rg = cpu.requires_grad();
    torch::Tensor moved = cpu.detach().to(c.device());
    if (rg) moved.set_requires_grad(true);
    return moved;
#endif
  }
  return decode_host({static_cast<const uint8_t*>(c.data_ptr()), static_cast<size_t>(c.numel())},
                     dtype, limits);
}

}  // namespace hivemind::quant
