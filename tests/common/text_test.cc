// Splitting comma lists: every field for parsers, trimmed non-empty items for users' lists.
#include <gtest/gtest.h>

#include <hivemind/common/text.h>

namespace hivemind {
namespace {

using Views = std::vector<std::string_view>;
using Items = std::vector<std::string>;

TEST(Split, KeepsEveryFieldIncludingEmptyOnes) {
  EXPECT_EQ(split("a,b", ','), (Views{"a", "b"}));
  EXPECT_EQ(split("a,,b", ','), (Views{"a", "", "b"}));
  EXPECT_EQ(split(",a,", ','), (Views{"", "a", ""}));
  EXPECT_EQ(split("", ','), (Views{""}));
  EXPECT_EQ(split("expert.0.12", '.'), (Views{"expert", "0", "12"}));
}

TEST(Split, ViewsPointIntoTheText) {
  const std::string text = "cpu,cuda:0";
  auto parts = split(text, ',');
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].data(), text.data() + 4);
}

TEST(SplitList, TrimsAndDropsEmptyItems) {
  EXPECT_EQ(split_list("cpu, cuda:0"), (Items{"cpu", "cuda:0"}));
  EXPECT_EQ(split_list(" a, ,b ,\t"), (Items{"a", "b"}));
  EXPECT_EQ(split_list(""), Items{});
  EXPECT_EQ(split_list(" , "), Items{});
  EXPECT_EQ(split_list("x y;z", ';'), (Items{"x y", "z"}));
}

}  // namespace
}  // namespace hivemind
