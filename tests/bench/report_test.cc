// The --json line of a measurement is JSON whatever its strings hold.
#include "support/report.h"

#include <cmath>
#include <limits>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace hivemind::bench {
namespace {

TEST(BenchJsonLine, EscapesControlCharactersQuotesAndBackslashes) {
  std::string awkward = "tab\there \"quoted\" back\\slash\nnew line \x01\x1f end";
  Measurement m{awkward, "half_rtt_us", 12.5, "us", "raw\x7f_tcp", 10};
  std::string line = json_line("transport\b", m);
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one measurement, one line";
  auto parsed = nlohmann::json::parse(line);  // throws on invalid JSON
  EXPECT_EQ(parsed["bench"], "transport\b");
  EXPECT_EQ(parsed["case"], awkward);
  EXPECT_EQ(parsed["metric"], "half_rtt_us");
  EXPECT_EQ(parsed["value"], 12.5);
  EXPECT_EQ(parsed["unit"], "us");
  EXPECT_EQ(parsed["baseline"], "raw\x7f_tcp");
  EXPECT_EQ(parsed["baseline_value"], 10);
  EXPECT_DOUBLE_EQ(parsed["ratio"].get<double>(), 1.25);
}

TEST(BenchJsonLine, KeepsTheDocumentedFieldOrder) {
  std::string line = json_line("dht", {"sim/N=100", "get_success", 1, "fraction", "ideal", 0.5});
  EXPECT_EQ(line, R"({"bench":"dht","case":"sim/N=100","metric":"get_success","value":1.0,)"
                  R"("unit":"fraction","baseline":"ideal","baseline_value":0.5,"ratio":2.0})");
}

TEST(BenchJsonLine, LeavesOutBaselineFieldsWhenThereIsNone) {
  auto parsed =
      nlohmann::json::parse(json_line("dht", {"sim/N=100", "join_wall_s", 0.25, "s", "", 0}));
  EXPECT_FALSE(parsed.contains("baseline"));
  EXPECT_FALSE(parsed.contains("ratio"));
  EXPECT_EQ(parsed["value"], 0.25);
}

TEST(BenchJsonLine, WritesNumbersThatAreNotFiniteAndZeroBaselinesAsNull) {
  Measurement m{"c", "m",    std::numeric_limits<double>::quiet_NaN(),
                "u", "base", 0};  // a baseline that measured nothing: no ratio
  auto parsed = nlohmann::json::parse(json_line("b", m));
  EXPECT_TRUE(parsed["value"].is_null());
  EXPECT_EQ(parsed["baseline_value"], 0);
  EXPECT_TRUE(parsed["ratio"].is_null());
  m.value = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(nlohmann::json::parse(json_line("b", m))["value"].is_null());
}

TEST(BenchJsonLine, ReplacesBytesThatAreNotUtf8) {
  Measurement m{"bad \xff\xfe bytes", "m", 1, "u", "", 0};
  auto parsed = nlohmann::json::parse(json_line("b", m));
  EXPECT_EQ(parsed["case"], "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");  // two U+FFFD
}

}  // namespace
}  // namespace hivemind::bench
