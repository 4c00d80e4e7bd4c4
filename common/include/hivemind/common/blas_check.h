// Detects which BLAS library the process has loaded.
//
// Debian's LibTorch links the generic libblas.so.3; without libopenblas0-pthread that resolves to
// the reference BLAS and a Linear layer runs about 50x slower. Programs that compute call
// warn_if_slow_blas() after LibTorch is loaded so a misconfigured machine is loud, not just slow.
#pragma once

#include <string>

namespace hivemind {

enum class BlasKind { kNone, kOpenBlas, kMkl, kBlis, kReference, kOther };

struct BlasInfo {
  BlasKind kind = BlasKind::kNone;
  std::string library_path;  // the resolved file that is mapped, empty when no BLAS is loaded
};

// Inspects /proc/self/maps for a loaded BLAS and resolves symlinks to tell reference BLAS apart.
BlasInfo detect_loaded_blas();

// Logs a loud warning (and returns false) when the reference BLAS is loaded.
bool warn_if_slow_blas();

}  // namespace hivemind
