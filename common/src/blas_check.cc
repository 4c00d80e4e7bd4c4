#include <filesystem>
#include <fstream>
#include <string>

#include <hivemind/common/blas_check.h>
#include <hivemind/common/logging.h>

namespace hivemind {
namespace {

bool contains(const std::string& text, const char* needle) {
  return text.find(needle) != std::string::npos;
}

BlasKind classify(const std::string& resolved) {
  if (contains(resolved, "openblas")) return BlasKind::kOpenBlas;
  if (contains(resolved, "mkl")) return BlasKind::kMkl;
  if (contains(resolved, "blis")) return BlasKind::kBlis;
  // Debian's reference BLAS lives in .../blas/libblas.so.3 (package libblas3).
  if (contains(resolved, "/blas/libblas")) return BlasKind::kReference;
  return BlasKind::kOther;
}

}  // namespace

BlasInfo detect_loaded_blas() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  BlasInfo info;
  while (std::getline(maps, line)) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    std::string file = std::filesystem::path(path).filename().string();
    bool blas_like = contains(file, "blas") || contains(file, "mkl_rt") || contains(file, "libmkl");
    if (!blas_like || contains(file, "cublas")) continue;
    std::error_code ec;
    std::string resolved = std::filesystem::canonical(path, ec).string();
    if (ec) resolved = path;
    BlasKind kind = classify(resolved);
    // A process may map both libblas.so.3 (a link) and the real library; the specific one wins.
    if (info.kind == BlasKind::kNone || info.kind == BlasKind::kOther ||
        info.kind == BlasKind::kReference) {
      if (kind != BlasKind::kOther || info.kind == BlasKind::kNone) {
        info.kind = kind;
        info.library_path = resolved;
      }
    }
  }
  return info;
}

bool warn_if_slow_blas() {
  BlasInfo info = detect_loaded_blas();
  if (info.kind != BlasKind::kReference) return true;
  logger("common")->error(
      "LibTorch is running on the REFERENCE BLAS ({}): matrix products will be about 50x slower. "
      "Install libopenblas0-pthread (./scripts/install-deps.sh does) or select it with "
      "update-alternatives --config libblas.so.3-x86_64-linux-gnu.",
      info.library_path);
  return false;
}

}  // namespace hivemind
