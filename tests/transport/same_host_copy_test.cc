// Same-host copy (same_host_copy.h): its wire messages refuse what they cannot hold, the reads
// land every byte, and over UCX a large payload to a peer on this host goes this way (and falls
// back to UCX where the receiver cannot read it).
#include <cerrno>
#include <cstring>
#include <future>

#include <gtest/gtest.h>

#include <hivemind/transport/context.h>
#include <hivemind/transport/same_host_copy.h>
#include <hivemind/transport/worker.h>

#include "transport_test_util.h"

namespace hivemind::transport {
namespace {

using namespace std::chrono_literals;

SameHostTrailer sample_trailer() {
  SameHostTrailer t;
  t.token = 0x0102030405060708ull;
  t.pid = 4242;
  t.host = this_host();
  t.addresses = {0x1000, 0, 0xdeadbeef000};
  return t;
}

TEST(SameHostWire, TrailerRoundTripsAndRefusesWhatItCannotHold) {
  const SameHostTrailer t = sample_trailer();
  auto bytes = encode_same_host_trailer(t);
  ASSERT_EQ(bytes.size(), same_host_trailer_size(3));
  auto back = decode_same_host_trailer(bytes, 3);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->token, t.token);
  EXPECT_EQ(back->pid, t.pid);
  EXPECT_EQ(back->host, t.host);
  EXPECT_EQ(back->addresses, t.addresses);

  // A trailer for another tensor count, one byte short or long.
  EXPECT_FALSE(decode_same_host_trailer(bytes, 2).is_ok());
  EXPECT_FALSE(decode_same_host_trailer(std::span(bytes).first(bytes.size() - 1), 3).is_ok());
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_same_host_trailer(longer, 3).is_ok());
  // A tensor count whose trailer could not exist is refused before anything is sized by it.
  EXPECT_FALSE(decode_same_host_trailer(bytes, UINT64_MAX / 4).is_ok());
  // Nonzero padding, pid 0.
  auto padded = bytes;
  padded[13] = 1;
  EXPECT_FALSE(decode_same_host_trailer(padded, 3).is_ok());
  SameHostTrailer no_pid = t;
  no_pid.pid = 0;
  Status st = decode_same_host_trailer(encode_same_host_trailer(no_pid), 3).status();
  EXPECT_NE(st.message().find("pid 0"), std::string::npos) << st.message();
}

TEST(SameHostWire, RepliesAndConfirmationsRoundTripAndRefuseTheRest) {
  for (SameHostOutcome o :
       {SameHostOutcome::kRead, SameHostOutcome::kReleased, SameHostOutcome::kUnreachable}) {
    SameHostReply r{77, o, EPERM};
    auto bytes = encode_same_host_reply(r);
    auto back = decode_same_host_reply(bytes);
    ASSERT_TRUE(back.is_ok());
    EXPECT_EQ(back->token, 77u);
    EXPECT_EQ(back->outcome, o);
    EXPECT_EQ(back->error, static_cast<uint32_t>(EPERM));
  }
  auto bytes = encode_same_host_reply({1, SameHostOutcome::kRead, 0});
  for (uint32_t bad : {0u, 4u, 0xffffffffu}) {
    auto wrong = bytes;
    std::memcpy(wrong.data() + 8, &bad, 4);  // little-endian hosts only run this test
    Status st = decode_same_host_reply(wrong).status();
    EXPECT_NE(st.message().find("unknown outcome"), std::string::npos) << st.message();
  }
  EXPECT_FALSE(decode_same_host_reply(std::span(bytes).first(15)).is_ok());

  auto confirm = encode_same_host_confirm(99);
  EXPECT_EQ(*decode_same_host_confirm(confirm), 99u);
  std::vector<uint8_t> nine(9, 0);
  EXPECT_FALSE(decode_same_host_confirm(nine).is_ok());
}

TEST(SameHostRead, ReadsEverySegmentAndNamesWhatFailed) {
  std::vector<uint8_t> a(300000), b(0), c(70000);
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < c.size(); ++i)
    c[i] = static_cast<uint8_t>(i * 13 + 1);
  std::vector<uint8_t> ra(a.size()), rb(0), rc(c.size());
  const uint64_t remote[] = {reinterpret_cast<uintptr_t>(a.data()),
                             reinterpret_cast<uintptr_t>(b.data()),
                             reinterpret_cast<uintptr_t>(c.data())};
  const std::span<uint8_t> local[] = {ra, rb, rc};
  EXPECT_EQ(read_from_process(static_cast<uint32_t>(::getpid()), remote, local), 0);
  EXPECT_EQ(ra, a);
  EXPECT_EQ(rc, c);

  // An address this process does not map.
  const uint64_t unmapped[] = {8};
  const std::span<uint8_t> one[] = {ra};
  EXPECT_EQ(read_from_process(static_cast<uint32_t>(::getpid()), unmapped, one), EFAULT);
  EXPECT_NE(this_host().pid_namespace, 0u) << "/proc gives no pid namespace here";
}

#ifdef HIVEMIND_TRANSPORT_HAVE_UCX

// Two workers of one process over UCX: every large frame's payload arrives intact, and lanes()
// shows how it went.
class SameHostOverUcx : public ::testing::Test {
 protected:
  void start(uint64_t threshold, FrameAllocator allocate = nullptr, bool keyed = true) {
    ContextOptions o;
    if (keyed) o.auth.swarm_key = testing::test_swarm_key();
    o.spin = 0us;
    o.ucx_config = {{"TLS", "tcp"}};  // no UCX shared memory: only our copy can be same-host
    o.ucx_same_host_copy_threshold = threshold;
    ctx_ = Context::create(o).value();
    receiver_ = Worker::create(ctx_).value();
    sender_ = Worker::create(ctx_).value();
    auto listener = receiver_->listen("ucx://127.0.0.1:0",
                                      [this, allocate](const std::shared_ptr<Endpoint>& ep) {
                                        accepted_ = ep;
                                        EndpointCallbacks cb;
                                        cb.allocate = allocate;
                                        cb.on_frame = [this](ReceivedFrame f) {
                                          frames_.at(next_frame_++).set_value(std::move(f));
                                        };
                                        return cb;
                                      });
    ASSERT_TRUE(listener.is_ok()) << listener.status().to_string();
    listener_ = *listener;
    ep_ = sender_->connect(listener_->address(), {}).value();
  }

  // Sends `tensors` and returns what arrived.
  ReceivedFrame round_trip(std::vector<Buffer> tensors) {
    OutgoingFrame f;
    f.method = "m";
    f.message.metadata = {1, 2, 3};
    f.message.tensors = std::move(tensors);
    std::promise<Status> sent;
    auto fs = sent.get_future();
    ep_->send(std::move(f), [&](Status st) { sent.set_value(st); });
    EXPECT_TRUE(testing::wait_for(fs).is_ok());
    auto fa = frames_.at(waited_++).get_future();
    return testing::wait_for(fa);
  }

  bool sender_used_same_host() {
    auto lanes = sender_->run_sync([&] { return ep_->lanes(); });
    return std::find(lanes.begin(), lanes.end(), kSameHostCopyLane) != lanes.end();
  }

  void TearDown() override {
    if (ep_) ep_->close();
    if (sender_) sender_->stop();
    if (receiver_) receiver_->stop();
  }

  std::shared_ptr<Context> ctx_;
  std::shared_ptr<Worker> receiver_, sender_;
  std::shared_ptr<Listener> listener_;
  std::shared_ptr<Endpoint> ep_, accepted_;
  std::array<std::promise<ReceivedFrame>, 8> frames_;
  size_t next_frame_ = 0, waited_ = 0;
};

TEST_F(SameHostOverUcx, LargePayloadsAreReadFromTheSender) {
  start(256 * 1024);
  // Below the threshold: UCX carries it.
  auto small = testing::pattern_buffer(1000, 1);
  ReceivedFrame f = round_trip({small});
  ASSERT_TRUE(f.refused.is_ok());
  EXPECT_TRUE(testing::same_bytes(f.message.tensors.at(0), small));
  EXPECT_FALSE(sender_used_same_host());
  // Three tensors, one empty, 1.3 MiB in all.
  auto a = testing::pattern_buffer(1 << 20, 2), b = testing::pattern_buffer(0, 3),
       c = testing::pattern_buffer(300001, 4);
  f = round_trip({a, b, c});
  ASSERT_TRUE(f.refused.is_ok()) << f.refused.to_string();
  ASSERT_EQ(f.message.tensors.size(), 3u);
  EXPECT_TRUE(testing::same_bytes(f.message.tensors[0], a));
  EXPECT_EQ(f.message.tensors[1].size(), 0u);
  EXPECT_TRUE(testing::same_bytes(f.message.tensors[2], c));
  EXPECT_EQ(f.message.metadata, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_TRUE(sender_used_same_host());
}

TEST_F(SameHostOverUcx, ThresholdZeroLeavesEveryPayloadToUcx) {
  start(0);
  auto a = testing::pattern_buffer(2 << 20, 5);
  ReceivedFrame f = round_trip({a});
  EXPECT_TRUE(testing::same_bytes(f.message.tensors.at(0), a));
  EXPECT_FALSE(sender_used_same_host());
}

TEST_F(SameHostOverUcx, WithoutASwarmKeyNoPeerNamesWhatIsRead) {
  start(256 * 1024, nullptr, /*keyed=*/false);
  auto a = testing::pattern_buffer(2 << 20, 8);
  ReceivedFrame f = round_trip({a});
  EXPECT_TRUE(testing::same_bytes(f.message.tensors.at(0), a));
  EXPECT_FALSE(sender_used_same_host());
}

TEST_F(SameHostOverUcx, AReceiverThatCannotReadGetsThePayloadThroughUcx) {
  // The first allocation asks for device memory, which the receiver cannot read into: it answers
  // "unreachable", and the sender sends the frame again through UCX, which the receiver allocates
  // afresh (host memory now). The sender then stops offering same-host frames on this endpoint:
  // the next frame takes one allocation, through UCX.
  int calls = 0;
  start(256 * 1024,
        [&calls](const FrameHeader&, const IncomingFrame& frame) -> Result<std::vector<Buffer>> {
          std::vector<Buffer> out;
          for (uint64_t size : frame.tensor_sizes) {
            if (calls == 0) {
              // Host bytes labelled as device memory: nobody may touch them as host memory.
              auto storage = std::make_shared<std::vector<uint8_t>>(size);
              out.push_back(Buffer::wrap(storage->data(), size, MemoryType::kCuda, 0, storage));
            } else {
              out.push_back(Buffer::allocate_host(size));
            }
          }
          ++calls;
          return out;
        });
  auto a = testing::pattern_buffer(1 << 20, 6);
  ReceivedFrame f = round_trip({a});
  ASSERT_TRUE(f.refused.is_ok()) << f.refused.to_string();
  EXPECT_TRUE(testing::same_bytes(f.message.tensors.at(0), a));
  EXPECT_EQ(receiver_->run_sync([&] { return calls; }), 2);
  auto b = testing::pattern_buffer(1 << 20, 7);
  f = round_trip({b});
  ASSERT_TRUE(f.refused.is_ok()) << f.refused.to_string();
  EXPECT_TRUE(testing::same_bytes(f.message.tensors.at(0), b));
  EXPECT_EQ(receiver_->run_sync([&] { return calls; }), 3);
  EXPECT_FALSE(sender_used_same_host());
}

#endif

}  // namespace
}  // namespace hivemind::transport
