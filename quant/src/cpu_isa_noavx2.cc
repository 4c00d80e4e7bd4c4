// Non-x86 builds: no AVX2 loops; the portable ones run.
#include "cpu_isa.h"

namespace hivemind::quant::detail {
const IsaKernels* avx2_kernels() {
  return nullptr;
}
}  // namespace hivemind::quant::detail
