#include "support/report.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace hivemind::bench {

namespace {

std::map<std::string, BenchEntry>& registry() {
  static std::map<std::string, BenchEntry> entries;
  return entries;
}

// ordered_json keeps the fields in the order the header comment documents; nlohmann-json writes a
// NaN or an infinity as null.
using Json = nlohmann::ordered_json;

}  // namespace

const std::map<std::string, BenchEntry>& benches() {
  return registry();
}

void register_bench(const char* name, const char* description, BenchSetup setup) {
  registry()[name] = {description, std::move(setup)};
}

std::string json_line(const std::string& bench, const Measurement& m) {
  Json line;
  line["bench"] = bench;
  line["case"] = m.case_name;
  line["metric"] = m.metric;
  line["value"] = m.value;
  line["unit"] = m.unit;
  if (!m.baseline.empty()) {
    line["baseline"] = m.baseline;
    line["baseline_value"] = m.baseline_value;
    if (m.baseline_value != 0)
      line["ratio"] = m.value / m.baseline_value;
    else
      line["ratio"] = nullptr;
  }
  // A name is ours, but a case may carry text from elsewhere (an error, a path): bytes that are not
  // UTF-8 become U+FFFD rather than an exception.
  return line.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void Reporter::report(const Measurement& m) {
  measurements_.push_back(m);
  bool has_baseline = !m.baseline.empty() && m.baseline_value != 0;
  double ratio = has_baseline ? m.value / m.baseline_value : 0;
  if (json_) {
    std::printf("%s\n", json_line(bench_, m).c_str());
  } else if (!m.baseline.empty()) {
    std::printf("%-10s %-28s %-16s %12.4g %-9s | %-14s %12.4g  ratio %.3f\n", bench_.c_str(),
                m.case_name.c_str(), m.metric.c_str(), m.value, m.unit.c_str(), m.baseline.c_str(),
                m.baseline_value, ratio);
  } else {
    std::printf("%-10s %-28s %-16s %12.4g %s\n", bench_.c_str(), m.case_name.c_str(),
                m.metric.c_str(), m.value, m.unit.c_str());
  }
  std::fflush(stdout);
}

std::string size_label(size_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return fmt::format("{}GiB", bytes >> 30);
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return fmt::format("{}MiB", bytes >> 20);
  if (bytes >= (1ull << 10) && bytes % (1ull << 10) == 0) return fmt::format("{}KiB", bytes >> 10);
  return fmt::format("{}B", bytes);
}

}  // namespace hivemind::bench
