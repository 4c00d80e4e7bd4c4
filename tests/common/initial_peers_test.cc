// The peer addresses every program reads: hivemind's multiaddrs, `auto`, and the bootstrap file.
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/initial_peers.h>

namespace hivemind {
namespace {

namespace fs = std::filesystem;
using Addresses = std::vector<std::string>;

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

TEST(PeerAddressTest, MultiaddrsBecomeTcpAddresses) {
  EXPECT_EQ(*parse_peer_address("/ip4/10.0.0.5/tcp/31337"), "tcp://10.0.0.5:31337");
  EXPECT_EQ(*parse_peer_address("/ip4/10.0.0.5/tcp/31337/p2p/QmXcxEWWFMSJ8SjZrQ3sP1jGJn1wS"),
            "tcp://10.0.0.5:31337");
  EXPECT_EQ(*parse_peer_address("/dns4/node07/tcp/1"), "tcp://node07:1");
  EXPECT_EQ(*parse_peer_address("/dns/node07.cluster/tcp/65535"), "tcp://node07.cluster:65535");
}

TEST(PeerAddressTest, OtherFormsPassThroughForTheTransport) {
  for (const char* address : {"tcp://10.0.0.5:1", "ucx://h:2", "node07:31337"})
    EXPECT_EQ(*parse_peer_address(address), address);
}

TEST(PeerAddressTest, MultiaddrsThisEngineCannotDialAreRefusedWithTheReason) {
  const std::map<std::string, std::string> cases = {
      {"/ip6/::1/tcp/1", "IPv6"},
      {"/ip4/10.0.0.5/udp/1/quic", "only tcp"},
      {"/ip4/10.0.0.5/tcp/0", "not a port"},
      {"/ip4/10.0.0.5/tcp/70000", "not a port"},
      {"/ip4/10.0.0.5/tcp/1x", "not a port"},
      {"/ip4/10.0.0.5/tcp", "needs a host and a tcp port"},
      {"/ip4/10.0.0.256/tcp/1", "not an IPv4 address"},
      {"/ip4//tcp/1", "host is empty"},
      {"/ip4/10.0.0.5/tcp/1/p2p-circuit", "after the port"},
      {"/ip4/10.0.0.5/tcp/1/p2p/", "after the port"},
      {"/unix/tmp/sock", "not a protocol"},
  };
  for (const auto& [address, why] : cases) {
    auto parsed = parse_peer_address(address);
    ASSERT_FALSE(parsed.is_ok()) << address;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(address), std::string::npos)
        << parsed.status().message();
    EXPECT_NE(parsed.status().message().find(why), std::string::npos)
        << address << ": " << parsed.status().message();
  }
  EXPECT_FALSE(parse_peer_address("").is_ok());
}

TEST(InitialPeersTest, ExplicitPeersAreParsedInOrder) {
  InitialPeersOptions o;
  o.initial_peers = {"/ip4/10.0.0.1/tcp/5/p2p/QmPeer", "tcp://10.0.0.2:6"};
  EXPECT_EQ(*gather_initial_peers(o, fake_env({})),
            (Addresses{"tcp://10.0.0.1:5", "tcp://10.0.0.2:6"}));
  EXPECT_TRUE(gather_initial_peers({}, fake_env({}))->empty());  // a new swarm
  o.initial_peers = {"/ip4/10.0.0.1/udp/5"};
  EXPECT_EQ(gather_initial_peers(o, fake_env({})).status().code(), StatusCode::kInvalidArgument);
}

TEST(InitialPeersTest, AutoIsTheHeadNodeOfTheAllocation) {
  InitialPeersOptions o;
  o.initial_peers = {"auto"};
  o.auto_port = 31400;
  EXPECT_EQ(*gather_initial_peers(o, fake_env({{"SLURM_JOB_NODELIST", "gpu[07-09]"}})),
            (Addresses{"gpu07:31400"}));
  auto outside = gather_initial_peers(o, fake_env({}));
  ASSERT_FALSE(outside.is_ok());
  EXPECT_NE(outside.status().message().find("needs a Slurm allocation"), std::string::npos);
}

class BootstrapPeersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("initial_peers_test." + std::to_string(getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "bootstrap.addr").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string path_;
};

TEST_F(BootstrapPeersTest, TheFilesAddressesFollowTheGivenOnes) {
  ASSERT_TRUE(write_bootstrap_file(path_, {"tcp://10.0.0.9:31337"}).is_ok());
  InitialPeersOptions o;
  o.initial_peers = {"/ip4/10.0.0.1/tcp/5"};
  o.bootstrap_file = path_;
  EXPECT_EQ(*gather_initial_peers(o, fake_env({})),
            (Addresses{"tcp://10.0.0.1:5", "tcp://10.0.0.9:31337"}));
}

TEST_F(BootstrapPeersTest, AMissingFileIsATimeoutNamingIt) {
  InitialPeersOptions o;
  o.bootstrap_file = path_;
  o.bootstrap_timeout = Milliseconds(0);  // already expired: one look, no wait
  auto peers = gather_initial_peers(o, fake_env({}));
  ASSERT_FALSE(peers.is_ok());
  EXPECT_EQ(peers.status().code(), StatusCode::kTimeout);
  EXPECT_NE(peers.status().message().find(path_), std::string::npos) << peers.status().message();
}

}  // namespace
}  // namespace hivemind
