#include <memory>
#include <stdexcept>

#include <gtest/gtest.h>

#include <hivemind/common/result.h>
#include <hivemind/common/status.h>

namespace hivemind {
namespace {

TEST(StatusTest, OkIsDefaultAndCarriesNoMessage) {
  Status status;
  EXPECT_TRUE(status.is_ok());
  EXPECT_EQ(status.code(), StatusCode::kOk);
  EXPECT_EQ(status.message(), "");
  EXPECT_EQ(status.to_string(), "Ok");
  EXPECT_NO_THROW(status.throw_if_error());
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status status = timeout_error("rpc 'forward' exceeded 2000 ms");
  EXPECT_FALSE(status.is_ok());
  EXPECT_EQ(status.code(), StatusCode::kTimeout);
  EXPECT_EQ(status.to_string(), "Timeout: rpc 'forward' exceeded 2000 ms");
  EXPECT_THROW(status.throw_if_error(), std::runtime_error);
  try {
    status.throw_if_error();
  } catch (const StatusError& e) {
    EXPECT_EQ(e.code(), status.code());  // the code survives the throw (the Python package maps it)
    EXPECT_EQ(std::string(e.what()), status.to_string());
  }
}

TEST(StatusTest, OkCodeWithMessageIsStillOk) {
  Status status(StatusCode::kOk, "ignored");
  EXPECT_TRUE(status.is_ok());
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  Status status = peer_closed_error("connection reset").with_context("endpoint tcp://1.2.3.4:5");
  EXPECT_EQ(status.code(), StatusCode::kPeerClosed);
  EXPECT_EQ(status.message(), "endpoint tcp://1.2.3.4:5: connection reset");
  EXPECT_TRUE(Status::ok().with_context("x").is_ok());
}

TEST(StatusTest, ErrnoErrorNamesTheCall) {
  Status status = errno_error("connect", ECONNREFUSED);
  EXPECT_EQ(status.code(), StatusCode::kIoError);
  EXPECT_NE(status.message().find("connect: "), std::string::npos);
}

TEST(StatusTest, EveryCodeHasAName) {
  for (int c = 0; c <= static_cast<int>(StatusCode::kIoError); ++c) {
    EXPECT_NE(status_code_name(static_cast<StatusCode>(c)), "Unknown") << c;
  }
}

Result<int> half(int x) {
  if (x % 2 != 0) return invalid_argument_error("odd");
  return x / 2;
}

Result<int> quarter(int x) {
  HIVEMIND_ASSIGN_OR_RETURN(int h, half(x));
  return half(h);
}

Status check_even(int x) {
  HIVEMIND_RETURN_IF_ERROR(half(x).status());
  return Status::ok();
}

TEST(ResultTest, HoldsValueOrError) {
  Result<int> good = half(8);
  ASSERT_TRUE(good.is_ok());
  EXPECT_EQ(*good, 4);
  EXPECT_TRUE(good.status().is_ok());

  Result<int> bad = half(3);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THROW(bad.value(), std::logic_error);
}

TEST(ResultTest, MacrosPropagateErrors) {
  EXPECT_EQ(*quarter(8), 2);
  EXPECT_EQ(quarter(6).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(check_even(2).is_ok());
  EXPECT_FALSE(check_even(1).is_ok());
}

TEST(ResultTest, MoveOnlyValues) {
  Result<std::unique_ptr<int>> result(std::make_unique<int>(7));
  std::unique_ptr<int> owned = std::move(result).value_or_throw();
  EXPECT_EQ(*owned, 7);
  Result<std::unique_ptr<int>> failed(not_found_error("none"));
  EXPECT_THROW(std::move(failed).value_or_throw(), std::runtime_error);
}

}  // namespace
}  // namespace hivemind
