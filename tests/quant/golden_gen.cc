// quant_golden_gen [dir]: rewrites the golden vectors from the CPU path. Run it only on purpose
// (after a deliberate change of the numeric spec), then review and commit the diff:
//   build/tests/quant_golden_gen tests/quant/golden
// quant_golden_gen --fuzz-seeds dir: writes small valid encodings (every scheme and dtype) as seeds
// for the quant_decode fuzz target (tests/fuzz/seeds/quant_decode).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <hivemind/quant/codec.h>

#include "golden_cases.h"

namespace {

bool write(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  std::printf("%-48s %8zu bytes\n", path.c_str(), bytes.size());
  return static_cast<bool>(out);
}

int fuzz_seeds(const std::string& dir) {
  using namespace hivemind::quant;
  std::vector<float> x(150);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(i % 17) * 0.25f - 2.0f;
  std::vector<uint16_t> h(150, 0x3c00);  // 1.0 in fp16, ~1.9 in bf16
  const std::vector<int64_t> shape = {3, 50};
  for (Scheme s : {Scheme::kNone, Scheme::kFloat16, Scheme::kBFloat16, Scheme::kBlockAbsmaxU8,
                   Scheme::kPerTensorAbsmaxU8, Scheme::kBlockAffineU8}) {
    for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      const void* data = dt == DType::kFloat32 ? static_cast<const void*>(x.data()) : h.data();
      auto enc = encode_to_vector({data, dt, shape, s == Scheme::kBlockAffineU8}, {s, 64});
      if (!enc.is_ok()) return 1;
      std::string name = std::string(scheme_name(s)) + "_" + std::string(dtype_name(dt));
      if (!write(dir + "/" + name, *enc)) return 1;
    }
  }
  std::vector<int32_t> ids = {1, 2, 3, 4};
  const std::vector<int64_t> ids_shape = {2, 2};
  auto enc = encode_to_vector({ids.data(), DType::kInt32, ids_shape}, {Scheme::kNone});
  if (!enc.is_ok() || !write(dir + "/none_int32", *enc)) return 1;
  const std::vector<int64_t> empty_shape = {0, 5};
  enc = encode_to_vector({nullptr, DType::kFloat32, empty_shape}, {Scheme::kBlockAbsmaxU8});
  if (!enc.is_ok() || !write(dir + "/empty", *enc)) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hivemind::quant::testing;
  if (argc > 2 && std::string(argv[1]) == "--fuzz-seeds") return fuzz_seeds(argv[2]);
  std::string dir = argc > 1 ? argv[1] : golden_dir();
  for (const auto& c : golden_cases()) {
    std::string path = dir + "/" + c.name + ".bin";
    if (!write(path, serialize(c, compute_expected(c)))) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  return 0;
}
