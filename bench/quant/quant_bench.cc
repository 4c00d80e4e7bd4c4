// hivemind-bench quant [--json] [--elements N] [--reps R] [--threads T] [--block B] [--isa
//                      avx2|portable] [--cpu-only] [--gpu-only] [--gpu-sizes-mib 64,256,1024]
//
// CPU: for 1..T threads, blockwise absmax quantize (fp32 and bf16 in) and dequantize (fp32 out) of
// N elements, next to a memcpy of the same input bytes with the same thread count, measured in the
// same run. Effective bandwidth = (bytes read + bytes written) / time, for both. Median of R
// repetitions (the first, which faults pages in, is discarded). Each quantize/dequantize case is
// also reported in Gelem/s against hivemind's Python 8-bit round trip: ~75 Melem/s, a HISTORICAL
// figure of hivemind PR #202 (Q0.2 in docs/hivemind-reference.md), not a same-run measurement.
#include "quant/quant_bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/numeric_spec.h>

#include "support/report.h"

namespace hivemind::bench {
namespace {

using namespace hivemind::quant;

// hivemind's UNIFORM_8BIT serialize+deserialize, ~0.135 s per 10 M floats (Q0.2 in
// docs/hivemind-reference.md).
constexpr double kHivemindPythonElemsPerSec = 75e6;

template <typename Fn>
double median_seconds(int reps, Fn&& fn) {
  std::vector<double> times;
  fn();  // warm-up: page faults, pool threads
  for (int r = 0; r < reps; ++r) {
    auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(seconds_since(start));
  }
  return median(times);
}

void parallel_memcpy(uint8_t* dst, const uint8_t* src, size_t bytes, int threads) {
  if (threads <= 1) {
    std::memcpy(dst, src, bytes);
    return;
  }
  std::vector<std::thread> pool;
  size_t chunk = (bytes / static_cast<size_t>(threads) + 63) & ~size_t{63};
  for (int t = 0; t < threads; ++t) {
    size_t first = std::min(bytes, chunk * static_cast<size_t>(t));
    size_t len = std::min(chunk, bytes - first);
    pool.emplace_back([=] { std::memcpy(dst + first, src + first, len); });
  }
  for (auto& th : pool)
    th.join();
}

int run_cpu(const QuantBenchOptions& options, Reporter& reporter) {
  const uint64_t n = options.elements;
  const int reps = options.reps;
  const int max_threads = options.threads > 0
                              ? options.threads
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const uint32_t block = options.block;
  if (!options.isa.empty()) {
    Status st = select_cpu_isa(options.isa);
    if (!st.is_ok()) {
      reporter.note("quant: {}", st.to_string());
      return 2;
    }
  }
  if (!validate_block_size(Scheme::kBlockAbsmaxU8, block).is_ok() || n == 0 || reps < 1) {
    reporter.note("quant: bad --block/--elements/--reps");
    return 2;
  }
  reporter.note(
      "quant cpu: {} elements ({} MiB fp32), block {}, loops {}, median of {} (shared machine: "
      "figures vary between runs)",
      n, (4 * n) >> 20, block, cpu_isa_name(), reps);

  std::vector<float> x(n);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (auto& v : x)
    v = dist(rng);
  std::vector<uint16_t> xb(n);
  for (uint64_t i = 0; i < n; ++i)
    xb[i] = spec::f32_to_bf16(x[i]);
  const uint64_t nb = num_blocks(Scheme::kBlockAbsmaxU8, n, block);
  std::vector<float> scales(nb);
  std::vector<uint8_t> codes(n);
  std::vector<float> y(n);
  std::vector<uint8_t> copy_dst(4 * n);
  std::memset(copy_dst.data(), 1, copy_dst.size());
  std::memset(y.data(), 1, 4 * n);

  for (int threads = 1; threads <= max_threads; ++threads) {
    CpuOptions cpu{threads};
    const std::string t = "t" + std::to_string(threads);
    // Baselines: memcpy of the fp32 input bytes and of the bf16 input bytes.
    double memcpy_s = median_seconds(reps, [&] {
      parallel_memcpy(copy_dst.data(), reinterpret_cast<const uint8_t*>(x.data()), 4 * n, threads);
    });
    double memcpy_bf16_s = median_seconds(reps, [&] {
      parallel_memcpy(copy_dst.data(), reinterpret_cast<const uint8_t*>(xb.data()), 2 * n, threads);
    });
    const double memcpy_gbps = 2.0 * 4 * n / memcpy_s / 1e9;
    const double memcpy_bf16_gbps = 2.0 * 2 * n / memcpy_bf16_s / 1e9;

    struct Case {
      const char* name;
      double bytes;  // read + written
      double baseline_gbps;
      std::function<void()> run;
    };
    Status status = Status::ok();
    std::vector<Case> cases = {
        {"quantize_f32_u8", 4.0 * n + n + 4.0 * nb, memcpy_gbps,
         [&] {
           status = quantize_cpu(x.data(), DType::kFloat32, n, Scheme::kBlockAbsmaxU8, block,
                                 scales.data(), nullptr, codes.data(), cpu);
         }},
        {"quantize_bf16_u8", 2.0 * n + n + 4.0 * nb, memcpy_bf16_gbps,
         [&] {
           status = quantize_cpu(xb.data(), DType::kBFloat16, n, Scheme::kBlockAbsmaxU8, block,
                                 scales.data(), nullptr, codes.data(), cpu);
         }},
        {"dequantize_u8_f32", n + 4.0 * nb + 4.0 * n, memcpy_gbps,
         [&] {
           status = dequantize_cpu(codes.data(), scales.data(), nullptr, n, Scheme::kBlockAbsmaxU8,
                                   block, y.data(), DType::kFloat32, cpu);
         }},
    };
    for (auto& c : cases) {
      double s = median_seconds(reps, c.run);
      if (!status.is_ok()) {
        reporter.note("quant: {} failed: {}", c.name, status.to_string());
        return 1;
      }
      std::string name = std::string("cpu/") + c.name + "/" + t;
      reporter.report(
          {name, "eff_bandwidth_GBps", c.bytes / s / 1e9, "GB/s", "memcpy", c.baseline_gbps});
      reporter.report({name, "Gelem_per_s", n / s / 1e9, "Gelem/s", "hivemind_py_8bit_historic",
                       kHivemindPythonElemsPerSec / 1e9});
    }
  }
  return 0;
}

}  // namespace

void QuantBenchOptions::declare(CLI::App& cli) {
  cli.add_option("--elements", elements, "elements per CPU case")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cli.add_option("--reps", reps, "repetitions (the median is reported)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cli.add_option("--threads", threads, "measure 1..T threads (default: every hardware thread)")
      ->check(CLI::PositiveNumber);
  cli.add_option("--block", block, "quantization block")->capture_default_str();
  cli.add_option("--isa", isa, "CPU kernels: avx2 or portable (default: the best this CPU has)");
  cli.add_flag("--cpu-only", cpu_only, "skip the GPU cases");
  cli.add_flag("--gpu-only", gpu_only, "skip the CPU cases");
  cli.add_option("--gpu-sizes-mib", gpu_sizes_mib, "GPU case sizes in MiB")
      ->delimiter(',')
      ->capture_default_str();
  cli.add_option("--gpu-reps", gpu_reps, "GPU repetitions (the median is reported)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

HIVEMIND_BENCH(quant, "8-bit quantize/dequantize: CPU vs same-run memcpy, GPU vs same-run D2D copy",
               QuantBenchOptions) {
  int rc = 0;
  if (!options.gpu_only) rc = run_cpu(options, reporter);
  if (rc == 0 && !options.cpu_only) rc = run_quant_gpu_bench(options, reporter);
  return rc;
}

}  // namespace hivemind::bench
