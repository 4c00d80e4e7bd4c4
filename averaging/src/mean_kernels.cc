#include "mean_kernels.h"

#include <cstring>

#include <hivemind/quant/numeric_spec.h>

namespace hivemind::averaging {
namespace {

// Plain loops over __restrict pointers: the compiler vectorizes the fp32 ones; the fp16/bf16
// widenings are the quant module's numeric-spec functions (exact). Every mean is a division, not a
// multiply by 1/members: the correctly rounded quotient of the sum.

struct Fp32 {
  static float at(const void* p, uint64_t i) { return static_cast<const float*>(p)[i]; }
};
struct Fp16 {
  static float at(const void* p, uint64_t i) {
    return quant::spec::f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
};
struct Bf16 {
  static float at(const void* p, uint64_t i) {
    return quant::spec::bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
};

// Runs body(W{}) with W the dtype's widening; non-floating dtypes never reach a round
// (check_round_tensors).
template <class Body>
void by_dtype(quant::DType dtype, Body&& body) {
  switch (dtype) {
    case quant::DType::kFloat32:
      body(Fp32{});
      return;
    case quant::DType::kFloat16:
      body(Fp16{});
      return;
    case quant::DType::kBFloat16:
      body(Bf16{});
      return;
    default:
      return;
  }
}

}  // namespace

void sum_into(float* __restrict sum, const void* a, const void* b, quant::DType dtype, uint64_t n) {
  by_dtype(dtype, [&]<class W>(W) {
    for (uint64_t i = 0; i < n; ++i)
      sum[i] = W::at(a, i) + W::at(b, i);
  });
}

void sum_into_mean(float* __restrict sum, const void* a, const void* b, quant::DType dtype,
                   uint64_t n, uint32_t members) {
  const float d = static_cast<float>(members);
  by_dtype(dtype, [&]<class W>(W) {
    for (uint64_t i = 0; i < n; ++i)
      sum[i] = (W::at(a, i) + W::at(b, i)) / d;
  });
}

void add_into(float* __restrict sum, const void* values, quant::DType dtype, uint64_t n) {
  by_dtype(dtype, [&]<class W>(W) {
    for (uint64_t i = 0; i < n; ++i)
      sum[i] += W::at(values, i);
  });
}

void add_into_mean(float* __restrict sum, const void* values, quant::DType dtype, uint64_t n,
                   uint32_t members) {
  const float d = static_cast<float>(members);
  by_dtype(dtype, [&]<class W>(W) {
    for (uint64_t i = 0; i < n; ++i)
      sum[i] = (sum[i] + W::at(values, i)) / d;
  });
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
