#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>
#include <prometheus/text_serializer.h>

#include <hivemind/common/metrics.h>

namespace hivemind {

void Counter::inc(double by) {
  if (!(by >= 0.0)) return;  // also false for NaN
  value_.fetch_add(by, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && !(bounds_[i] > bounds_[i - 1]))) {
      throw std::invalid_argument("histogram bucket bounds must be finite and strictly increasing");
    }
  }
  buckets_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i)
    buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double value) {
  // Prometheus buckets are "less than or equal": the first bound >= value; NaN lands in +Inf.
  size_t bucket = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                      bounds_.begin());
  if (std::isnan(value)) bucket = bounds_.size();
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snapshot;
  snapshot.cumulative.reserve(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative.push_back(running);
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

std::vector<double> linear_buckets(double start, double width, size_t count) {
  std::vector<double> bounds;
  for (size_t i = 0; i < count; ++i)
    bounds.push_back(start + width * static_cast<double>(i));
  return bounds;
}

std::vector<double> exponential_buckets(double start, double factor, size_t count) {
  if (!(start > 0.0) || !(factor > 1.0)) {
    throw std::invalid_argument("exponential_buckets needs start > 0 and factor > 1");
  }
  std::vector<double> bounds;
  double bound = start;
  for (size_t i = 0; i < count; ++i, bound *= factor)
    bounds.push_back(bound);
  return bounds;
}

namespace {

enum Type : int { kCounter, kGauge, kHistogram, kCallback, kCounterCallback };

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.rfind("__", 0) == 0) return false;  // "__" prefixes are reserved
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Label sets are compared sorted by name, so {a,b} and {b,a} are one series.
MetricLabels canonical_labels(std::string_view family, const MetricLabels& labels, bool histogram) {
  MetricLabels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& name = sorted[i].first;
    if (!valid_label_name(name) || (histogram && name == "le")) {
      throw std::invalid_argument(fmt::format("metric {}: invalid label name '{}'", family, name));
    }
    if (i > 0 && sorted[i - 1].first == name) {
      throw std::invalid_argument(fmt::format("metric {}: label '{}' given twice", family, name));
    }
  }
  return sorted;
}

// prometheus::TextSerializer writes HELP text verbatim, so a newline in it would end the comment
// line and corrupt the exposition; escape it (and backslashes) as the format asks.
std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

prometheus::MetricType prometheus_type(int type) {
  switch (type) {
    case kCounter:
    case kCounterCallback:
      return prometheus::MetricType::Counter;
    case kHistogram:
      return prometheus::MetricType::Histogram;
    default:
      return prometheus::MetricType::Gauge;
  }
}

}  // namespace

struct MetricsRegistry::Family {
  int type = kCounter;
  std::string help;
  std::vector<double> buckets;  // histograms only
  std::map<MetricLabels, std::shared_ptr<void>> series;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family& MetricsRegistry::family_locked(std::string_view name,
                                                        std::string_view help, int type) {
  if (!valid_metric_name(name))
    throw std::invalid_argument(fmt::format("invalid metric name '{}'", name));
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto family = std::make_unique<Family>();
    family->type = type;
    family->help = std::string(help);
    it = families_.emplace(std::string(name), std::move(family)).first;
  }
  // A callback gauge and a plain gauge render alike, but one series cannot be both; keep them
  // apart.
  if (it->second->type != type) {
    throw std::invalid_argument(
        fmt::format("metric {} is already registered as another type", name));
  }
  return *it->second;
}

std::shared_ptr<void>& MetricsRegistry::series_locked(Family& family, const MetricLabels& labels) {
  return family.series[labels];
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                  const MetricLabels& labels) {
  auto canonical = canonical_labels(name, labels, false);
  std::lock_guard lock(mutex_);
  Family& family = family_locked(name, help, kCounter);
  auto& slot = series_locked(family, canonical);
  if (!slot) slot = std::make_shared<Counter>();
  return *std::static_pointer_cast<Counter>(slot);
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help,
                              const MetricLabels& labels) {
  auto canonical = canonical_labels(name, labels, false);
  std::lock_guard lock(mutex_);
  Family& family = family_locked(name, help, kGauge);
  auto& slot = series_locked(family, canonical);
  if (!slot) slot = std::make_shared<Gauge>();
  return *std::static_pointer_cast<Gauge>(slot);
}

Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help,
                                      const std::vector<double>& upper_bounds,
                                      const MetricLabels& labels) {
  auto canonical = canonical_labels(name, labels, true);
  auto created = std::make_shared<Histogram>(upper_bounds);  // validates the bounds before locking
  std::lock_guard lock(mutex_);
  bool is_new_family = families_.find(name) == families_.end();
  Family& family = family_locked(name, help, kHistogram);
  if (is_new_family) family.buckets = upper_bounds;
  if (family.buckets != upper_bounds) {
    throw std::invalid_argument(
        fmt::format("histogram {}: every series must use the same buckets", name));
  }
  auto& slot = series_locked(family, canonical);
  if (!slot) slot = std::move(created);
  return *std::static_pointer_cast<Histogram>(slot);
}

void MetricsRegistry::gauge_callback(std::string_view name, std::string_view help,
                                     const MetricLabels& labels, std::function<double()> read) {
  if (!read) throw std::invalid_argument(fmt::format("metric {}: empty callback", name));
  auto canonical = canonical_labels(name, labels, false);
  std::lock_guard lock(mutex_);
  Family& family = family_locked(name, help, kCallback);
  series_locked(family, canonical) = std::make_shared<std::function<double()>>(std::move(read));
}

void MetricsRegistry::counter_callback(std::string_view name, std::string_view help,
                                       const MetricLabels& labels, std::function<double()> read) {
  if (!read) throw std::invalid_argument(fmt::format("metric {}: empty callback", name));
  auto canonical = canonical_labels(name, labels, false);
  std::lock_guard lock(mutex_);
  Family& family = family_locked(name, help, kCounterCallback);
  series_locked(family, canonical) = std::make_shared<std::function<double()>>(std::move(read));
}

std::vector<prometheus::MetricFamily> MetricsRegistry::Collect() const {
  // Copy the structure under the lock, read the values outside it: callbacks may take other locks,
  // and a slow scrape must not stall registration on a hot path.
  struct FamilyView {
    std::string name;
    int type;
    std::string help;
    std::vector<double> buckets;
    std::vector<std::pair<MetricLabels, std::shared_ptr<void>>> series;
  };
  std::vector<FamilyView> view;
  {
    std::lock_guard lock(mutex_);
    view.reserve(families_.size());
    for (const auto& [name, family] : families_) {
      view.push_back({name,
                      family->type,
                      family->help,
                      family->buckets,
                      {family->series.begin(), family->series.end()}});
    }
  }

  std::vector<prometheus::MetricFamily> collected;
  collected.reserve(view.size());
  for (auto& family : view) {
    prometheus::MetricFamily& out = collected.emplace_back();
    out.name = std::move(family.name);
    out.help = escape_help(family.help);
    out.type = prometheus_type(family.type);
    out.metric.reserve(family.series.size());
    for (const auto& [labels, series] : family.series) {
      prometheus::ClientMetric& metric = out.metric.emplace_back();
      metric.label.reserve(labels.size());
      for (const auto& [name, value] : labels)
        metric.label.push_back({name, value});
      switch (family.type) {
        case kCounter:
          metric.counter.value = std::static_pointer_cast<Counter>(series)->value();
          break;
        case kGauge:
          metric.gauge.value = std::static_pointer_cast<Gauge>(series)->value();
          break;
        case kCounterCallback:
          metric.counter.value = (*std::static_pointer_cast<std::function<double()>>(series))();
          break;
        case kCallback:
          metric.gauge.value = (*std::static_pointer_cast<std::function<double()>>(series))();
          break;
        case kHistogram: {
          // The serializer adds the +Inf bucket from sample_count, which the snapshot keeps equal
          // to its last cumulative count.
          auto snapshot = std::static_pointer_cast<Histogram>(series)->snapshot();
          metric.histogram.sample_count = snapshot.count;
          metric.histogram.sample_sum = snapshot.sum;
          metric.histogram.bucket.reserve(family.buckets.size());
          for (size_t i = 0; i < family.buckets.size(); ++i)
            metric.histogram.bucket.push_back({snapshot.cumulative[i], family.buckets[i]});
          break;
        }
      }
    }
  }
  return collected;
}

std::string MetricsRegistry::render() const {
  return prometheus::TextSerializer().Serialize(Collect());
}

}  // namespace hivemind
