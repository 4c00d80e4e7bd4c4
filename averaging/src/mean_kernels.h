// The arithmetic of a round: contributions summed in fp32 (whatever the tensors' dtype, so fp16
// and bf16 parts lose nothing to the sum), the mean rounded once into the tensors' dtype.
//
// The chunk's last contribution turns the sum into the mean in the same pass (the `_mean`
// variants: (sum + value) / members), so no pass over the sums only divides.
#pragma once

#include <cstdint>

#include <hivemind/quant/types.h>

namespace hivemind::averaging {

// sum[i] = float(a[i]) + float(b[i]) for i < n: a chunk's first sum, formed straight from this
// member's values and the first contribution (no pass that only copies the own values).
void sum_into(float* sum, const void* a, const void* b, quant::DType dtype, uint64_t n);
// sum[i] = (float(a[i]) + float(b[i])) / members: the same when it is also the last (2 members).
void sum_into_mean(float* sum, const void* a, const void* b, quant::DType dtype, uint64_t n,
                   uint32_t members);
// sum[i] += float(values[i]).
void add_into(float* sum, const void* values, quant::DType dtype, uint64_t n);
// sum[i] = (sum[i] + float(values[i])) / members: the last contribution, and the mean.
void add_into_mean(float* sum, const void* values, quant::DType dtype, uint64_t n,
                   uint32_t members);
// out[i] = mean[i] as `dtype` (round to nearest even for fp16/bf16).
void narrow_into(void* out, quant::DType dtype, const float* mean, uint64_t n);

}  // namespace hivemind::averaging
