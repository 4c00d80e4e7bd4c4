#include "mean_kernels.h"

#include <cstring>

#include <hivemind/quant/numeric_spec.h>

namespace hivemind::averaging {

// Plain loops over __restrict pointers: the compiler vectorizes the fp32 ones; the fp16/bf16
// conversions are the quant module's numeric-spec functions (exact widening, RNE narrowing).

void sum_into(float* __restrict sum, const void* a, const void* b, quant::DType dtype, uint64_t n) {
  switch (dtype) {
    case quant::DType::kFloat32: {
      const auto* __restrict x = static_cast<const float*>(a);
      const auto* __restrict y = static_cast<const float*>(b);
      for (uint64_t i = 0; i < n; ++i)
        sum[i] = x[i] + y[i];
      return;
    }
    case quant::DType::kFloat16: {
      const auto* x = static_cast<const uint16_t*>(a);
      const auto* y = static_cast<const uint16_t*>(b);
      for (uint64_t i = 0; i < n; ++i)
        sum[i] = quant::spec::f16_to_f32(x[i]) + quant::spec::f16_to_f32(y[i]);
      return;
    }
    case quant::DType::kBFloat16: {
      const auto* x = static_cast<const uint16_t*>(a);
      const auto* y = static_cast<const uint16_t*>(b);
      for (uint64_t i = 0; i < n; ++i)
        sum[i] = quant::spec::bf16_to_f32(x[i]) + quant::spec::bf16_to_f32(y[i]);
      return;
    }
    default:
      return;  // non-floating dtypes never reach a round (check_round_tensors)
  }
}

void add_into(float* __restrict sum, const void* values, quant::DType dtype, uint64_t n) {
  switch (dtype) {
    case quant::DType::kFloat32: {
      const auto* __restrict v = static_cast<const float*>(values);
      for (uint64_t i = 0; i < n; ++i)
        sum[i] += v[i];
      return;
    }
    case quant::DType::kFloat16: {
      const auto* v = static_cast<const uint16_t*>(values);
      for (uint64_t i = 0; i < n; ++i)
        sum[i] += quant::spec::f16_to_f32(v[i]);
      return;
    }
    case quant::DType::kBFloat16: {
      const auto* v = static_cast<const uint16_t*>(values);
      for (uint64_t i = 0; i < n; ++i)
        sum[i] += quant::spec::bf16_to_f32(v[i]);
      return;
    }
    default:
      return;
  }
}

void divide_in_place(float* __restrict sum, uint64_t n, uint32_t members) {
  // A division, not a multiply by 1/members: the mean is the correctly rounded quotient of the sum.
  const float d = static_cast<float>(members);
  for (uint64_t i = 0; i < n; ++i)
    sum[i] /= d;
}

void narrow_into(void* out, quant::DType dtype, const float* __restrict mean, uint64_t n) {
  switch (dtype) {
    case quant::DType::kFloat32:
      std::memcpy(out, mean, n * sizeof(float));
      return;
    case quant::DType::kFloat16: {
      auto* o = static_cast<uint16_t*>(out);
      for (uint64_t i = 0; i < n; ++i)
        o[i] = quant::spec::f32_to_f16(mean[i]);
      return;
    }
    case quant::DType::kBFloat16: {
      auto* o = static_cast<uint16_t*>(out);
      for (uint64_t i = 0; i < n; ++i)
        o[i] = quant::spec::f32_to_bf16(mean[i]);
      return;
    }
    default:
      return;
  }
}

}  // namespace hivemind::averaging
