// Expert uid patterns: expansion in grid order, sampling, and the errors that say what is wrong.
#include <set>

#include <gtest/gtest.h>

#include <hivemind/common/expert_uid.h>
#include <hivemind/dht/uid_pattern.h>

namespace hivemind::dht {
namespace {

TEST(UidPattern, ExpandsInGridOrder) {
  EXPECT_EQ(expand_uid_pattern("e.[0:2].[3:5]").value(),
            (std::vector<std::string>{"e.0.3", "e.0.4", "e.1.3", "e.1.4"}));
  EXPECT_EQ(expand_uid_pattern("ffn.7.[1:3]").value(),
            (std::vector<std::string>{"ffn.7.1", "ffn.7.2"}));
  EXPECT_EQ(uid_pattern_size("e.[0:4].[0:8]").value(), 32);
  const std::vector<std::string> cube = expand_uid_pattern("expert.[0:3].[0:3].[0:3]").value();
  EXPECT_EQ(cube.size(), 27u);
  for (const auto& uid : cube)
    EXPECT_TRUE(is_valid_uid(uid)) << uid;
}

TEST(UidPattern, SamplesDistinctUidsReproduciblyWithoutTheWholeGrid) {
  auto some = expand_uid_pattern("e.[0:10].[0:10]", 7, 1).value();
  EXPECT_EQ(some.size(), 7u);
  EXPECT_EQ(std::set<std::string>(some.begin(), some.end()).size(), 7u);
  EXPECT_EQ(expand_uid_pattern("e.[0:10].[0:10]", 7, 1).value(), some);
  // 10^12 uids: too many to list, fine to sample.
  EXPECT_FALSE(expand_uid_pattern("e.[0:1000000].[0:1000000]").is_ok());
  EXPECT_EQ(expand_uid_pattern("e.[0:1000000].[0:1000000]", 3, 5).value().size(), 3u);
}

TEST(UidPattern, NamesOnlyUidsOfTheUidGrammar) {
  // A pattern without ranges is one uid, and a pattern is accepted only if its uids are uids.
  for (const char* uid : {"expert.0.12", "e.0", "ffn.3.14.159"})
    EXPECT_EQ(expand_uid_pattern(uid).value(), std::vector<std::string>{uid});
  const std::string name(kMaxUidBytes - 2, 'e');
  const std::string longest = name + ".[0:10]";  // up to name + ".9": kMaxUidBytes
  const std::vector<std::string> uids = expand_uid_pattern(longest).value();
  EXPECT_EQ(uids.size(), 10u);
  for (const auto& uid : uids)
    EXPECT_TRUE(is_valid_uid(uid)) << uid;
  EXPECT_FALSE(expand_uid_pattern("a/b.[0:2]").is_ok());  // a name no uid may have
  auto too_long = expand_uid_pattern(name + ".[0:11]");   // name + ".10": one byte too many
  ASSERT_FALSE(too_long.is_ok());
  EXPECT_NE(too_long.status().message().find("longest uid"), std::string::npos);
}

TEST(UidPattern, MalformedPatternsSayWhatIsWrong) {
  for (const char* bad : {"e", "[0:2]", "e.[2:1]", "e.[0:2", "e.01", "e.[a:b]", "e..1", "e.[0:1:2]",
                          "e.[0:9999999999]"}) {
    auto r = expand_uid_pattern(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(expand_uid_pattern("e.[0:2]", 3).is_ok());
  EXPECT_FALSE(expand_uid_pattern("e.[0:2]", -1).is_ok());
}

}  // namespace
}  // namespace hivemind::dht
