#include <dlfcn.h>
#include <gtest/gtest.h>

#include <hivemind/common/blas_check.h>

namespace hivemind {
namespace {

TEST(BlasCheckTest, NoBlasInAPlainProcess) {
  // This test binary links no BLAS; detection must not invent one.
  BlasInfo info = detect_loaded_blas();
  if (info.kind == BlasKind::kNone) {
    EXPECT_TRUE(info.library_path.empty());
  }
}

TEST(BlasCheckTest, DetectsTheSystemBlasOnceLoaded) {
  void* handle = dlopen("libblas.so.3", RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) GTEST_SKIP() << "libblas.so.3 is not installed: " << dlerror();
  BlasInfo info = detect_loaded_blas();
  EXPECT_NE(info.kind, BlasKind::kNone);
  EXPECT_FALSE(info.library_path.empty());
  // scripts/install-deps.sh installs OpenBLAS, which Debian's alternatives then prefer.
  EXPECT_EQ(info.kind, BlasKind::kOpenBlas) << info.library_path;
  dlclose(handle);
}

}  // namespace
}  // namespace hivemind
