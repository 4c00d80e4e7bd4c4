#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/common/metrics.h>

namespace hivemind {
namespace {

// A strict reader of the exposition format, enough to check what render() promises: every line is a
// HELP/TYPE comment or "name{labels} value", and every sample belongs to the family announced by
// TYPE.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

std::vector<Sample> parse_exposition(const std::string& text) {
  std::vector<Sample> samples;
  std::istringstream in(text);
  std::string line;
  std::string family;
  std::string type;
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "output must end with a newline";
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream words(line.substr(7));
      words >> family >> type;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      continue;
    }
    Sample sample;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ')
      sample.name += line[i++];
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string name;
        while (i < line.size() && line[i] != '=')
          name += line[i++];
        EXPECT_EQ(line.substr(i, 2), "=\"") << line;
        i += 2;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            char escaped = line[++i];
            value += escaped == 'n' ? '\n' : escaped;
            ++i;
          } else {
            value += line[i++];
          }
        }
        ++i;  // closing quote
        if (i < line.size() && line[i] == ',') ++i;
        sample.labels[name] = value;
      }
      ++i;  // '}'
    }
    EXPECT_EQ(line.substr(i, 1), " ") << line;
    sample.value = line.substr(i + 1);
    EXPECT_FALSE(sample.value.empty()) << line;
    bool in_family = sample.name == family ||
                     (type == "histogram" &&
                      (sample.name == family + "_bucket" || sample.name == family + "_sum" ||
                       sample.name == family + "_count"));
    EXPECT_TRUE(in_family) << "sample " << sample.name << " outside its family " << family;
    samples.push_back(std::move(sample));
  }
  return samples;
}

const Sample* find(const std::vector<Sample>& samples, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (const auto& s : samples) {
    if (s.name == name && s.labels == labels) return &s;
  }
  return nullptr;
}

TEST(MetricsTest, CountersAndGaugesRender) {
  MetricsRegistry registry;
  auto& requests =
      registry.counter("hivemind_requests_total", "Requests served", {{"expert", "expert.0.1"}});
  requests.inc();
  requests.inc(2);
  requests.inc(-5);  // ignored: counters never go down
  requests.inc(NAN);
  auto& depth = registry.gauge("hivemind_queue_depth", "Tasks waiting");
  depth.set(7);
  depth.dec(2);
  depth.inc(0.5);

  std::string text = registry.render();
  EXPECT_EQ(text,
            "# HELP hivemind_queue_depth Tasks waiting\n"
            "# TYPE hivemind_queue_depth gauge\n"
            "hivemind_queue_depth 5.5\n"
            "# HELP hivemind_requests_total Requests served\n"
            "# TYPE hivemind_requests_total counter\n"
            "hivemind_requests_total{expert=\"expert.0.1\"} 3\n");
  parse_exposition(text);
}

TEST(MetricsTest, SameNameAndLabelsGiveTheSameSeries) {
  MetricsRegistry registry;
  auto& a = registry.counter("x_total", "x", {{"a", "1"}, {"b", "2"}});
  auto& b = registry.counter("x_total", "ignored later help", {{"b", "2"}, {"a", "1"}});
  auto& other = registry.counter("x_total", "x", {{"a", "1"}, {"b", "3"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &other);
  a.inc();
  b.inc();
  auto samples = parse_exposition(registry.render());
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(find(samples, "x_total", {{"a", "1"}, {"b", "2"}})->value, "2");
  EXPECT_EQ(find(samples, "x_total", {{"a", "1"}, {"b", "3"}})->value, "0");
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  MetricsRegistry registry;
  registry.gauge("g", "line one\nback\\slash", {{"path", "a\"b\\c\nd"}}).set(1);
  std::string text = registry.render();
  EXPECT_NE(text.find("# HELP g line one\\nback\\\\slash\n"), std::string::npos) << text;
  EXPECT_NE(text.find("g{path=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << text;
  auto samples = parse_exposition(text);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].labels.at("path"), "a\"b\\c\nd");
}

TEST(MetricsTest, SpecialValuesUsePrometheusSpelling) {
  MetricsRegistry registry;
  registry.gauge("g", "h", {{"k", "inf"}}).set(HUGE_VAL);
  registry.gauge("g", "h", {{"k", "ninf"}}).set(-HUGE_VAL);
  registry.gauge("g", "h", {{"k", "nan"}}).set(NAN);
  registry.gauge("g", "h", {{"k", "small"}}).set(1e-9);
  auto samples = parse_exposition(registry.render());
  EXPECT_EQ(find(samples, "g", {{"k", "inf"}})->value, "+Inf");
  EXPECT_EQ(find(samples, "g", {{"k", "ninf"}})->value, "-Inf");
  // prometheus-cpp's TextSerializer spells NaN "Nan"; Prometheus parses it case-insensitively.
  EXPECT_EQ(find(samples, "g", {{"k", "nan"}})->value, "Nan");
  EXPECT_EQ(std::stod(find(samples, "g", {{"k", "small"}})->value), 1e-9);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  MetricsRegistry registry;
  auto& latency =
      registry.histogram("rpc_seconds", "Latency", {0.01, 0.1, 1}, {{"method", "forward"}});
  for (double v : {0.005, 0.01, 0.05, 0.5, 0.7, 3.0})
    latency.observe(v);
  std::string text = registry.render();
  auto samples = parse_exposition(text);
  auto bucket = [&](const char* le) {
    const Sample* s = find(samples, "rpc_seconds_bucket", {{"method", "forward"}, {"le", le}});
    EXPECT_NE(s, nullptr) << le << "\n" << text;
    return s ? s->value : "";
  };
  EXPECT_EQ(bucket("0.01"), "2");  // 0.01 itself falls in le="0.01"
  EXPECT_EQ(bucket("0.1"), "3");
  EXPECT_EQ(bucket("1"), "5");
  EXPECT_EQ(bucket("+Inf"), "6");
  EXPECT_EQ(find(samples, "rpc_seconds_count", {{"method", "forward"}})->value, "6");
  EXPECT_NEAR(std::stod(find(samples, "rpc_seconds_sum", {{"method", "forward"}})->value), 4.265,
              1e-12);
  EXPECT_NE(text.find("# TYPE rpc_seconds histogram\n"), std::string::npos);
}

TEST(MetricsTest, BucketHelpers) {
  EXPECT_EQ(linear_buckets(1, 2, 3), (std::vector<double>{1, 3, 5}));
  EXPECT_EQ(exponential_buckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_THROW(exponential_buckets(0, 2, 3), std::invalid_argument);
}

TEST(MetricsTest, CallbackGaugesAreReadAtScrapeTime) {
  MetricsRegistry registry;
  int routing_table_size = 3;
  registry.gauge_callback("dht_routing_table_size", "Peers known", {},
                          [&] { return routing_table_size; });
  EXPECT_NE(registry.render().find("dht_routing_table_size 3\n"), std::string::npos);
  routing_table_size = 11;
  EXPECT_NE(registry.render().find("dht_routing_table_size 11\n"), std::string::npos);
  registry.gauge_callback("dht_routing_table_size", "Peers known", {}, [] { return 1.0; });
  EXPECT_NE(registry.render().find("dht_routing_table_size 1\n"), std::string::npos);
}

TEST(MetricsTest, CallbackCountersRenderAsCounters) {
  MetricsRegistry registry;
  double bytes = 4096;
  registry.counter_callback("transport_bytes_sent_total", "Bytes sent", {{"transport", "tcp"}},
                            [&] { return bytes; });
  std::string text = registry.render();
  EXPECT_NE(text.find("# TYPE transport_bytes_sent_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("transport_bytes_sent_total{transport=\"tcp\"} 4096\n"), std::string::npos)
      << text;
  EXPECT_THROW(registry.gauge_callback("transport_bytes_sent_total", "h", {}, [] { return 0.0; }),
               std::invalid_argument);
  EXPECT_THROW(registry.counter_callback("cb_total", "h", {}, nullptr), std::invalid_argument);
}

TEST(MetricsTest, CallbackMayUseTheRegistry) {
  // Rendering runs callbacks outside the registry lock, so a callback that touches the registry (or
  // takes a lock that a registering thread holds) cannot deadlock.
  MetricsRegistry registry;
  registry.gauge_callback("reentrant", "h", {}, [&registry] {
    registry.counter("created_inside_total", "h").inc();
    return 1.0;
  });
  registry.render();
  EXPECT_NE(registry.render().find("created_inside_total 1\n"), std::string::npos);
}

TEST(MetricsTest, RegistrationErrorsThrow) {
  MetricsRegistry registry;
  registry.counter("c_total", "h");
  EXPECT_THROW(registry.gauge("c_total", "h"), std::invalid_argument);
  EXPECT_THROW(registry.counter("bad-name", "h"), std::invalid_argument);
  EXPECT_THROW(registry.counter("9starts_with_digit", "h"), std::invalid_argument);
  EXPECT_THROW(registry.counter("c_total", "h", {{"__reserved", "x"}}), std::invalid_argument);
  EXPECT_THROW(registry.counter("c_total", "h", {{"a", "1"}, {"a", "2"}}), std::invalid_argument);
  EXPECT_THROW(registry.histogram("h", "h", {1, 1}), std::invalid_argument);
  EXPECT_THROW(registry.histogram("h", "h", {1, NAN}), std::invalid_argument);
  EXPECT_THROW(registry.histogram("h", "h", {1}, {{"le", "x"}}), std::invalid_argument);
  registry.histogram("h", "h", {1, 2});
  EXPECT_THROW(registry.histogram("h", "h", {1, 3}, {{"a", "b"}}), std::invalid_argument);
  EXPECT_THROW(registry.gauge_callback("cb", "h", {}, nullptr), std::invalid_argument);
  // Failed registrations leave nothing behind.
  auto samples = parse_exposition(registry.render());
  EXPECT_EQ(samples.size(), 6u);  // c_total, plus h: three buckets, _sum and _count
}

TEST(MetricsTest, ConcurrentUpdatesAreExact) {
  MetricsRegistry registry;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every thread registers its own lookups too, racing with the others and with render().
      auto& counter = registry.counter("ops_total", "h");
      auto& gauge = registry.gauge("level", "h");
      auto& histogram =
          registry.histogram("sizes", "h", {1, 10, 100}, {{"thread", std::to_string(t % 2)}});
      for (int i = 0; i < kPerThread; ++i) {
        counter.inc();
        gauge.inc();
        gauge.dec();
        histogram.observe(i % 200);
        if (i % 5000 == 0) parse_exposition(registry.render());
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  auto samples = parse_exposition(registry.render());
  EXPECT_EQ(find(samples, "ops_total", {})->value, std::to_string(kThreads * kPerThread));
  EXPECT_EQ(find(samples, "level", {})->value, "0");
  for (const char* t : {"0", "1"}) {
    EXPECT_EQ(find(samples, "sizes_count", {{"thread", t}})->value, std::to_string(2 * kPerThread));
    EXPECT_EQ(find(samples, "sizes_bucket", {{"thread", t}, {"le", "+Inf"}})->value,
              std::to_string(2 * kPerThread));
    // 0..199 repeated: 2 of 200 values are <= 1, 11 are <= 10, 101 are <= 100.
    EXPECT_EQ(find(samples, "sizes_bucket", {{"thread", t}, {"le", "10"}})->value,
              std::to_string(2 * kPerThread / 200 * 11));
  }
}

}  // namespace
}  // namespace hivemind
