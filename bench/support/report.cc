#include "support/report.h"

#include <cmath>
#include <cstdlib>
#include <map>

#include <hivemind/common/env.h>

namespace hivemind::bench {

std::map<std::string, std::pair<std::string, BenchFunction>>& registry() {
  static std::map<std::string, std::pair<std::string, BenchFunction>> benches;
  return benches;
}

Registration::Registration(const char* name, const char* description, BenchFunction run) {
  registry()[name] = {description, std::move(run)};
}

namespace {

std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  return fmt::format("{:.6g}", v);
}

}  // namespace

void Reporter::report(const Measurement& m) {
  measurements_.push_back(m);
  bool has_baseline = !m.baseline.empty() && m.baseline_value != 0;
  double ratio = has_baseline ? m.value / m.baseline_value : 0;
  if (json_) {
    std::string line = fmt::format(
        R"({{"bench":"{}","case":"{}","metric":"{}","value":{},"unit":"{}")", json_escape(bench_),
        json_escape(m.case_name), json_escape(m.metric), json_number(m.value), json_escape(m.unit));
    if (!m.baseline.empty()) {
      line +=
          fmt::format(R"(,"baseline":"{}","baseline_value":{},"ratio":{})", json_escape(m.baseline),
                      json_number(m.baseline_value), has_baseline ? json_number(ratio) : "null");
    }
    line += "}";
    std::printf("%s\n", line.c_str());
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

static const std::string* find_value(const std::vector<std::string>& values,
                                     const std::string& name) {
  std::string flag = "--" + name;
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] == flag && i + 1 < values.size()) return &values[i + 1];
    if (values[i].rfind(flag + "=", 0) == 0) {
      static thread_local std::string tail;
      tail = values[i].substr(flag.size() + 1);
      return &tail;
    }
  }
  return nullptr;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  const std::string* v = find_value(values, name);
  return v ? *v : fallback;
}

long long Args::get_int(const std::string& name, long long fallback) const {
  const std::string* v = find_value(values, name);
  if (!v) return fallback;
  auto parsed = parse_int(*v);
  if (!parsed.is_ok()) {
    std::fprintf(stderr, "--%s: %s\n", name.c_str(), parsed.status().to_string().c_str());
    std::exit(2);
  }
  return *parsed;
}

double Args::get_double(const std::string& name, double fallback) const {
  const std::string* v = find_value(values, name);
  if (!v) return fallback;
  auto parsed = parse_double(*v);
  if (!parsed.is_ok()) {
    std::fprintf(stderr, "--%s: %s\n", name.c_str(), parsed.status().to_string().c_str());
    std::exit(2);
  }
  return *parsed;
}

bool Args::has(const std::string& name) const {
  std::string flag = "--" + name;
  for (const auto& v : values) {
    if (v == flag || v.rfind(flag + "=", 0) == 0) return true;
  }
  return false;
}

std::string size_label(size_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return fmt::format("{}GiB", bytes >> 30);
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return fmt::format("{}MiB", bytes >> 20);
  if (bytes >= (1ull << 10) && bytes % (1ull << 10) == 0) return fmt::format("{}KiB", bytes >> 10);
  return fmt::format("{}B", bytes);
}

}  // namespace hivemind::bench
