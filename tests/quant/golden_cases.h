// Golden vectors of the quant numeric spec: deterministic inputs (zeros, denormals, tiny and huge
// blocks, ties, outliers, ragged tails, bf16/fp16, the non-finite policy) and the files that pin
// the CPU path's scales, zero-points and codes for them. The CPU golden test recomputes and
// compares; the GPU test replays the same files on the device; quant_golden_gen rewrites them
// (deliberately).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <hivemind/quant/types.h>

namespace hivemind::quant::testing {

struct GoldenCase {
  std::string name;
  DType dtype;
  Scheme scheme;
  uint32_t block_size;  // for per-tensor: ignored (0)
  uint64_t n;
  std::vector<uint8_t> input;  // n * dtype_size bytes
};

struct GoldenExpected {
  std::vector<uint8_t> scales;       // 4 * n_blocks bytes
  std::vector<uint8_t> zero_points;  // n_blocks bytes (affine) or empty
  std::vector<uint8_t> codes;        // n bytes
  uint64_t first_bad_block =
      UINT64_MAX;  // lowest non-finite block; UINT64_MAX when the encode succeeds
};

struct GoldenFile {
  GoldenCase input;
  GoldenExpected expected;
};

// The cases, generated from fixed seeds with integer arithmetic only (no libm), so every platform
// produces the same input bytes.
std::vector<GoldenCase> golden_cases();

// Runs the CPU path on a case.
GoldenExpected compute_expected(const GoldenCase& c);

// File I/O (format: "HMQG" v1 header, input, scales, zero-points, codes; see golden_cases.cc).
std::vector<uint8_t> serialize(const GoldenCase& c, const GoldenExpected& e);
std::optional<GoldenFile> parse(const std::vector<uint8_t>& bytes);
std::string golden_dir();  // tests/quant/golden in the source tree
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace hivemind::quant::testing
