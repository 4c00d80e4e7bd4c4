#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include <hivemind/common/bootstrap_file.h>

namespace hivemind {
namespace {

namespace fs = std::filesystem;
using Addresses = std::vector<std::string>;

class BootstrapFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("bootstrap_test." + std::to_string(getpid()) + "." + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "bootstrap.addr").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_raw(const std::string& content) {
    std::ofstream out(path_, std::ios::binary);
    out << content;
  }
  std::string read_raw() const {
    std::ifstream in(path_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  size_t entries() const {
    return static_cast<size_t>(
        std::distance(fs::directory_iterator(dir_), fs::directory_iterator()));
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(BootstrapFileTest, WriteThenReadRoundTrips) {
  ASSERT_TRUE(write_bootstrap_file(path_, {"10.0.0.1:31337", "tcp://10.0.0.1:31338"}).is_ok());
  EXPECT_EQ(read_raw(), "10.0.0.1:31337\ntcp://10.0.0.1:31338\n");
  auto read = read_bootstrap_file(path_);
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ(**read, (Addresses{"10.0.0.1:31337", "tcp://10.0.0.1:31338"}));
  EXPECT_EQ(entries(), 1u) << "the temporary file must not be left behind";
}

TEST_F(BootstrapFileTest, WriteReplacesAStaleFile) {
  ASSERT_TRUE(write_bootstrap_file(path_, {"old:1"}).is_ok());
  ASSERT_TRUE(write_bootstrap_file(path_, {"new:2"}).is_ok());
  EXPECT_EQ(**read_bootstrap_file(path_), (Addresses{"new:2"}));
  EXPECT_EQ(entries(), 1u);
}

TEST_F(BootstrapFileTest, WriteRejectsBadInput) {
  EXPECT_EQ(write_bootstrap_file(path_, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(write_bootstrap_file(path_, {"has space:1"}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(write_bootstrap_file(path_, {"two\nlines"}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(write_bootstrap_file(path_, {""}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(write_bootstrap_file(path_, {std::string(2000, 'a')}).code(),
            StatusCode::kInvalidArgument);
  Status missing_dir = write_bootstrap_file((dir_ / "no" / "such" / "file").string(), {"a:1"});
  EXPECT_EQ(missing_dir.code(), StatusCode::kIoError);
  EXPECT_NE(missing_dir.message().find("no/such/file"), std::string::npos) << missing_dir.message();
  EXPECT_FALSE(fs::exists(path_));
  EXPECT_EQ(entries(), 0u);
}

TEST_F(BootstrapFileTest, ReadDistinguishesMissingFromInvalid) {
  auto missing = read_bootstrap_file(path_);
  ASSERT_TRUE(missing.is_ok());
  EXPECT_FALSE(missing->has_value());

  write_raw("");
  EXPECT_EQ(read_bootstrap_file(path_).status().code(), StatusCode::kProtocol);
  write_raw("# only a comment\n\n");
  EXPECT_EQ(read_bootstrap_file(path_).status().code(), StatusCode::kProtocol);
  write_raw("10.0.0.1:1\n\x01\x02\n");
  EXPECT_EQ(read_bootstrap_file(path_).status().code(), StatusCode::kProtocol);
  write_raw(std::string(kBootstrapFileMaxBytes + 1, 'a'));
  EXPECT_EQ(read_bootstrap_file(path_).status().code(), StatusCode::kTooLarge);

  write_raw("# written by hand\r\n  10.0.0.1:1 \r\n\n10.0.0.2:2");
  EXPECT_EQ(**read_bootstrap_file(path_), (Addresses{"10.0.0.1:1", "10.0.0.2:2"}));
}

TEST_F(BootstrapFileTest, PublishOnceHasExactlyOneWinner) {
  constexpr int kRacers = 8;
  std::atomic<int> winners{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      auto published = publish_bootstrap_file_once(path_, {"peer" + std::to_string(i) + ":1"});
      if (!published.is_ok())
        ++errors;
      else if (*published)
        ++winners;
    });
  }
  for (auto& thread : threads)
    thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(winners.load(), 1);
  auto content = read_bootstrap_file(path_);
  ASSERT_TRUE(content.is_ok());
  ASSERT_EQ((*content)->size(), 1u);
  EXPECT_EQ((**content)[0].rfind("peer", 0), 0u);
  EXPECT_EQ(entries(), 1u);

  auto late = publish_bootstrap_file_once(path_, {"late:1"});
  ASSERT_TRUE(late.is_ok());
  EXPECT_FALSE(*late);
  EXPECT_EQ(**read_bootstrap_file(path_), **content);
}

TEST_F(BootstrapFileTest, WaitTimesOutNamingTheFileOnVirtualTime) {
  ManualClock clock;
  std::vector<int64_t> sleeps;
  BootstrapWaitOptions options;
  options.first_poll = Milliseconds(10);
  options.max_poll = Milliseconds(100);
  options.sleep = [&](Milliseconds ms) {
    sleeps.push_back(ms.count());
    clock.advance(ms);
  };
  auto result =
      wait_for_bootstrap_file(path_, Deadline::after(Milliseconds(500), clock), clock, options);
  ASSERT_FALSE(result.is_ok());
  EXPECT_EQ(result.status().code(), StatusCode::kTimeout);
  EXPECT_NE(result.status().message().find(path_), std::string::npos) << result.status().message();
  EXPECT_NE(result.status().message().find("500 ms"), std::string::npos)
      << result.status().message();
  // Backoff doubles to the cap, and the last sleep stops exactly at the deadline.
  EXPECT_EQ(sleeps, (std::vector<int64_t>{10, 20, 40, 80, 100, 100, 100, 50}));
}

TEST_F(BootstrapFileTest, WaitReturnsWhenTheFileAppearsOnVirtualTime) {
  ManualClock clock;
  int polls = 0;
  BootstrapWaitOptions options;
  options.sleep = [&](Milliseconds ms) {
    clock.advance(ms);
    if (++polls == 3) {
      ASSERT_TRUE(write_bootstrap_file(path_, {"10.1.2.3:31337"}).is_ok());
    }
  };
  auto result =
      wait_for_bootstrap_file(path_, Deadline::after(Milliseconds(60'000), clock), clock, options);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  EXPECT_EQ(*result, (Addresses{"10.1.2.3:31337"}));
  EXPECT_EQ(polls, 3);
}

TEST_F(BootstrapFileTest, WaitFailsAtOnceOnAnInvalidFile) {
  write_raw("");
  ManualClock clock;
  BootstrapWaitOptions options;
  options.sleep = [&](Milliseconds) {
    ADD_FAILURE() << "must not wait on a file that exists but is invalid";
  };
  auto result =
      wait_for_bootstrap_file(path_, Deadline::after(Milliseconds(1000), clock), clock, options);
  EXPECT_EQ(result.status().code(), StatusCode::kProtocol);
}

TEST_F(BootstrapFileTest, WaitSeesAConcurrentWriterOnRealTime) {
  // The writer runs whenever the scheduler lets it; the waiter's generous deadline is only a bound.
  std::thread writer(
      [&] { ASSERT_TRUE(write_bootstrap_file(path_, {"127.0.0.1:23001"}).is_ok()); });
  auto result = wait_for_bootstrap_file(path_, Deadline::after(Milliseconds(30'000)));
  writer.join();
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  EXPECT_EQ(*result, (Addresses{"127.0.0.1:23001"}));
}

TEST_F(BootstrapFileTest, WaitTimesOutOnRealTime) {
  auto result = wait_for_bootstrap_file(path_, Deadline::after(Milliseconds(30)));
  ASSERT_FALSE(result.is_ok());
  EXPECT_EQ(result.status().code(), StatusCode::kTimeout);
  EXPECT_NE(result.status().message().find("bootstrap.addr"), std::string::npos);
}

}  // namespace
}  // namespace hivemind
