// TransportBackend: several members in one process (one Worker, rpc server and client each, one
// thread per member calling all_reduce_mean on a fixed Group). Exact means for 1..5 members, odd
// sizes and mixed dtypes, compression within its bound, mismatched, missing and vanished members,
// and part messages refused before allocation.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <list>
#include <ostream>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include <hivemind/averaging/part_message.h>
#include <hivemind/averaging/transport_backend.h>
#include <hivemind/quant/numeric_spec.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

namespace hivemind::averaging {
namespace {

using namespace std::chrono_literals;
using quant::DType;

// One member's values: tensors of given dtypes and sizes, stored as bytes.
struct Tensors {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<DType> dtypes;

  std::vector<TensorRef> refs() {
    std::vector<TensorRef> out;
    for (size_t i = 0; i < storage.size(); ++i)
      out.push_back(
          {storage[i].data(), storage[i].size() / quant::dtype_size(dtypes[i]), dtypes[i]});
    return out;
  }
  double value(size_t t, size_t i) const {
    const uint8_t* p = storage[t].data() + i * quant::dtype_size(dtypes[t]);
    uint16_t h = 0;
    switch (dtypes[t]) {
      case DType::kFloat32: {
        float f;
        std::memcpy(&f, p, 4);
        return f;
      }
      case DType::kFloat16:
        std::memcpy(&h, p, 2);
        return quant::spec::f16_to_f32(h);
      default:
        std::memcpy(&h, p, 2);
        return quant::spec::bf16_to_f32(h);
    }
  }
  void set(size_t t, size_t i, float v) {
    uint8_t* p = storage[t].data() + i * quant::dtype_size(dtypes[t]);
    uint16_t h = 0;
    switch (dtypes[t]) {
      case DType::kFloat32:
        std::memcpy(p, &v, 4);
        return;
      case DType::kFloat16:
        h = quant::spec::f32_to_f16(v);
        break;
      default:
        h = quant::spec::f32_to_bf16(v);
        break;
    }
    std::memcpy(p, &h, 2);
  }
};

struct Shape {
  std::vector<DType> dtypes;
  std::vector<size_t> sizes;
};

Tensors random_tensors(const Shape& shape, uint64_t seed, bool normal = false) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(0.5f, 2.0f);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  Tensors t;
  t.dtypes = shape.dtypes;
  for (size_t i = 0; i < shape.sizes.size(); ++i) {
    t.storage.emplace_back(shape.sizes[i] * quant::dtype_size(shape.dtypes[i]));
    for (size_t e = 0; e < shape.sizes[i]; ++e)
      t.set(i, e, normal ? gauss(rng) : uniform(rng));
  }
  return t;
}

// A member: its own worker, rpc server (where the backend serves) and client.
struct Member {
  std::shared_ptr<transport::Worker> worker;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;
  std::shared_ptr<TransportBackend> backend;

  void stop() {
    if (backend) backend->close();
    if (client) client->close();
    if (server) server->close();
    if (worker) worker->stop();
  }
};

class TransportBackendTest : public ::testing::Test {
 protected:
  // n members average compressed; the result is within docs/architecture.md's bound.
  void expect_compressed_mean_within_the_documented_bound(size_t n);
  void SetUp() override {
    transport::ContextOptions options;
    options.spin = 0us;  // the shared 2-core machine: sleep rather than spin
    context_ = transport::Context::create(options).value();
  }
  void TearDown() override {
    for (auto& m : members_)
      m.stop();
  }

  void start(size_t n, TransportBackendOptions options = {}) {
    for (size_t i = 0; i < n; ++i) {
      Member m;
      m.worker = transport::Worker::create(context_, "avg" + std::to_string(i)).value();
      m.server = transport::rpc::Server::create(m.worker, "tcp://127.0.0.1:0").value();
      m.client = transport::rpc::Client::create(m.worker);
      auto backend = TransportBackend::create(m.server, m.client, options);
      ASSERT_TRUE(backend.is_ok()) << backend.status().to_string();
      m.backend = *backend;
      members_.push_back(std::move(m));
    }
  }

  Group group_for(size_t self, uint64_t round = 1, size_t n = 0) const {
    Group g;
    g.key = "run42.dense";
    g.round = round;
    for (size_t i = 0; i < (n ? n : members_.size()); ++i)
      g.members.push_back({members_[i].server->address(), {"transport"}, ""});
    g.self = self;
    g.backend = "transport";
    return g;
  }

  // Runs all_reduce_mean on members `who` at once, each on its own thread.
  std::vector<Status> run(std::vector<Tensors>& values, std::vector<size_t> who,
                          Milliseconds timeout, uint64_t round = 1,
                          std::vector<RoundReport>* reports = nullptr) {
    std::vector<Status> out(who.size());
    std::vector<RoundReport> local(who.size());
    std::vector<std::thread> threads;
    const Deadline deadline = Deadline::after(timeout);
    for (size_t k = 0; k < who.size(); ++k) {
      threads.emplace_back([&, k] {
        const size_t i = who[k];
        auto refs = values[i].refs();
        out[k] =
            members_[i].backend->all_reduce_mean(group_for(i, round), refs, deadline, local[k]);
      });
    }
    for (auto& t : threads)
      t.join();
    if (reports) *reports = local;
    return out;
  }

  // The tensors a test averages, owned by the fixture: after a failed round, contributions sent
  // from their memory may still be queued to a stalled member until its connection closes
  // (TransportBackend's contract), so they must outlive the members, stopped in TearDown.
  std::vector<Tensors>& own(std::vector<Tensors> tensors) {
    owned_.push_back(std::move(tensors));
    return owned_.back();
  }

  std::shared_ptr<transport::Context> context_;
  std::vector<Member> members_;
  std::list<std::vector<Tensors>> owned_;  // destroyed after TearDown
};

// |got - mean| allowed: fp32 within 1e-6 relative; fp16/bf16 one unit of their last place (the mean
// is summed in fp32 and rounded once).
double tolerance(DType dtype, double mean) {
  switch (dtype) {
    case DType::kFloat32:
      return 1e-6 * std::abs(mean);
    case DType::kFloat16:
      return std::ldexp(std::abs(mean), -10);
    default:
      return std::ldexp(std::abs(mean), -7);
  }
}

void expect_exact_mean(const std::vector<Tensors>& before, const std::vector<Tensors>& after) {
  const size_t n = before.size();
  for (size_t t = 0; t < before[0].storage.size(); ++t) {
    const size_t elements = before[0].storage[t].size() / quant::dtype_size(before[0].dtypes[t]);
    for (size_t e = 0; e < elements; ++e) {
      double mean = 0;
      for (size_t m = 0; m < n; ++m)
        mean += before[m].value(t, e);
      mean /= static_cast<double>(n);
      const double got = after[0].value(t, e);
      ASSERT_LE(std::abs(got - mean), tolerance(before[0].dtypes[t], mean))
          << "tensor " << t << " element " << e << ": got " << got << ", mean " << mean;
    }
  }
  // Every member holds the same bytes: the owner of a part sends everyone the same mean.
  for (size_t m = 1; m < n; ++m)
    ASSERT_EQ(after[m].storage, after[0].storage) << "member " << m << " differs";
}

struct MeanCase {
  size_t members;
  Shape shape;
  uint64_t chunk_elements;
};

// "3_members_1003_elements_in_1_tensors_chunk_100", for the test's name and its printed parameter
// (by default gtest prints the bytes, vectors' addresses included: a different CTest name every
// run).
std::string describe(const MeanCase& c) {
  size_t elements = 0;
  for (size_t n : c.shape.sizes)
    elements += n;
  return std::to_string(c.members) + "_members_" + std::to_string(elements) + "_elements_in_" +
         std::to_string(c.shape.sizes.size()) + "_tensors_chunk_" +
         std::to_string(c.chunk_elements);
}
std::string mean_case_name(const ::testing::TestParamInfo<MeanCase>& info) {
  return describe(info.param);
}
void PrintTo(const MeanCase& c, std::ostream* os) {
  *os << describe(c);
}

class ExactMean : public TransportBackendTest, public ::testing::WithParamInterface<MeanCase> {};

TEST_P(ExactMean, EveryMemberHoldsTheMean) {
  const MeanCase& c = GetParam();
  TransportBackendOptions options;
  options.chunk_elements = c.chunk_elements;
  start(c.members, options);
  std::vector<Tensors> before;
  for (size_t m = 0; m < c.members; ++m)
    before.push_back(random_tensors(c.shape, 100 + m));
  std::vector<Tensors>& values = own(before);
  std::vector<size_t> all(c.members);
  for (size_t i = 0; i < all.size(); ++i)
    all[i] = i;
  std::vector<RoundReport> reports;
  auto statuses = run(values, all, 60s, 1, &reports);
  for (size_t m = 0; m < c.members; ++m)
    ASSERT_TRUE(statuses[m].is_ok()) << "member " << m << ": " << statuses[m].to_string();
  if (c.members == 1) {
    EXPECT_EQ(values[0].storage, before[0].storage);  // a group of one is a no-op
    EXPECT_EQ(reports[0].bytes_sent, 0u);
    return;
  }
  expect_exact_mean(before, values);
  for (const auto& r : reports) {
    EXPECT_GT(r.bytes_sent, 0u);
    EXPECT_GT(r.bytes_received, 0u);
  }
}

const Shape kOneElement{{DType::kFloat32}, {1}};
const Shape kOdd{{DType::kFloat32}, {1003}};
const Shape kMixed{{DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat32},
                   {517, 33, 1001, 7}};

INSTANTIATE_TEST_SUITE_P(
    Sizes, ExactMean,
    ::testing::Values(MeanCase{1, kOdd, 64}, MeanCase{2, kOneElement, 64},
                      MeanCase{3, kOneElement, 64},  // parts of 0 elements
                      MeanCase{5, kOneElement, 64}, MeanCase{2, kOdd, 64}, MeanCase{3, kOdd, 100},
                      MeanCase{5, kOdd, 1}, MeanCase{2, kMixed, 50}, MeanCase{3, kMixed, 128},
                      MeanCase{5, kMixed, 1 << 18},
                      MeanCase{3, Shape{{DType::kFloat32}, {(1u << 18) * 3 + 11}}, 1 << 16}),
    mean_case_name);

// The send window at its smallest (one chunk to every other part): rounds still complete.
TEST_F(TransportBackendTest, SmallestSendWindowStillCompletes) {
  TransportBackendOptions options;
  options.chunk_elements = 64;
  options.max_in_flight_bytes = 1;
  start(3, options);
  std::vector<Tensors> before;
  for (size_t m = 0; m < 3; ++m)
    before.push_back(random_tensors(kMixed, 40 + m));
  std::vector<Tensors>& values = own(before);
  auto statuses = run(values, {0, 1, 2}, 60s);
  for (size_t m = 0; m < 3; ++m)
    ASSERT_TRUE(statuses[m].is_ok()) << statuses[m].to_string();
  expect_exact_mean(before, values);
}

// 64 MiB of fp32 over 4 members once (the size of the benchmark).
TEST_F(TransportBackendTest, SixtyFourMebibytesOverFourMembers) {
  start(4);
  const size_t elements = (64u << 20) / 4;
  std::vector<Tensors> before;
  for (size_t m = 0; m < 4; ++m) {
    Tensors t;
    t.dtypes = {DType::kFloat32};
    t.storage.emplace_back(elements * 4);
    auto* f = reinterpret_cast<float*>(t.storage[0].data());
    for (size_t e = 0; e < elements; ++e)  // exact in fp32: the sums of four are exact too
      f[e] = static_cast<float>((e * 7 + m * 13) % 1024);
    before.push_back(std::move(t));
  }
  std::vector<Tensors>& values = own(before);
  const auto started = SteadyClock::now();
  auto statuses = run(values, {0, 1, 2, 3}, 120s);
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
  // Informational only (no timing asserts): bus bandwidth = 2 (n-1)/n x bytes / time.
  std::printf("64 MiB fp32, 4 members (threads, tcp loopback): %.3f s, bus bandwidth %.2f GB/s\n",
              seconds, 1.5 * (64 << 20) / seconds / 1e9);
  for (size_t m = 0; m < 4; ++m)
    ASSERT_TRUE(statuses[m].is_ok()) << statuses[m].to_string();
  for (size_t m = 0; m < 4; ++m) {
    const auto* f = reinterpret_cast<const float*>(values[m].storage[0].data());
    for (size_t e = 0; e < elements; e += 4099) {
      float sum = 0;
      for (size_t k = 0; k < 4; ++k)
        sum += static_cast<float>((e * 7 + k * 13) % 1024);
      ASSERT_EQ(f[e], sum / 4) << "member " << m << " element " << e;
    }
  }
  for (size_t m = 1; m < 4; ++m)
    ASSERT_EQ(values[m].storage, values[0].storage);
}

// n members average float32 and bfloat16 tensors compressed. With 2 members a chunk's first
// contribution is also its last (own values, the contribution and the division in one pass); with 3
// there is a contribution in between.
void TransportBackendTest::expect_compressed_mean_within_the_documented_bound(size_t n) {
  TransportBackendOptions options;
  options.compression = quant::Scheme::kBlockAbsmaxU8;
  options.chunk_elements = 10000;
  start(n, options);
  const Shape shape{{DType::kFloat32, DType::kBFloat16}, {30011, 4099}};
  std::vector<Tensors> before;
  for (size_t m = 0; m < n; ++m)
    before.push_back(random_tensors(shape, 7 + m, /*normal=*/true));
  std::vector<Tensors>& values = own(before);
  std::vector<size_t> everyone(n);
  for (size_t m = 0; m < n; ++m)
    everyone[m] = m;
  auto statuses = run(values, everyone, 60s);
  for (size_t m = 0; m < n; ++m)
    ASSERT_TRUE(statuses[m].is_ok()) << statuses[m].to_string();
  for (size_t t = 0; t < 2; ++t) {
    const size_t elements = shape.sizes[t];
    double largest = 0;  // A: the largest |value| any member holds (bounds every block's)
    for (size_t m = 0; m < n; ++m)
      for (size_t e = 0; e < elements; ++e)
        largest = std::max(largest, std::abs(before[m].value(t, e)));
    double worst = 0;
    for (size_t e = 0; e < elements; ++e) {
      double mean = 0;
      for (size_t m = 0; m < n; ++m)
        mean += before[m].value(t, e);
      mean /= static_cast<double>(n);
      const double got = values[0].value(t, e);
      // docs/architecture.md: |error| <= A / 126, plus the rounding into bf16.
      const double bound = largest / 126 + (t == 1 ? std::ldexp(std::abs(got), -8) : 0.0);
      ASSERT_LE(std::abs(got - mean), bound) << "tensor " << t << " element " << e;
      worst = std::max(worst, std::abs(got - mean) / largest);
    }
    EXPECT_GT(worst, 0.0);  // it did compress
    std::printf("%zu members, tensor %zu (%s): largest |error| = %.5f x A (bound 1/126 = %.5f)\n",
                n, t, t == 0 ? "float32" : "bfloat16", worst, 1.0 / 126);
  }
  for (size_t m = 1; m < n; ++m)
    ASSERT_EQ(values[m].storage, values[0].storage);
}

TEST_F(TransportBackendTest, CompressedMeanOfTwoWithinTheDocumentedBound) {
  expect_compressed_mean_within_the_documented_bound(2);
}

TEST_F(TransportBackendTest, CompressedMeanOfThreeWithinTheDocumentedBound) {
  expect_compressed_mean_within_the_documented_bound(3);
}

// The failure tests: the members that ran must fail, name the reason, and keep their tensors.
void expect_failed_unchanged(const std::vector<Status>& statuses, const std::vector<size_t>& who,
                             const std::vector<Tensors>& before, const std::vector<Tensors>& after,
                             const std::string& expected_text) {
  for (size_t k = 0; k < who.size(); ++k) {
    const size_t i = who[k];
    ASSERT_FALSE(statuses[k].is_ok()) << "member " << i << " succeeded";
    EXPECT_NE(statuses[k].to_string().find(expected_text), std::string::npos)
        << "member " << i << ": " << statuses[k].to_string();
    EXPECT_EQ(after[i].storage, before[i].storage) << "member " << i << " changed its tensors";
  }
}

TEST_F(TransportBackendTest, MemberWithOtherTensorsIsRefusedAndTheRoundFailsForAll) {
  start(3);
  const Shape shape{{DType::kFloat32}, {1000}};
  std::vector<Tensors> before{random_tensors(shape, 1), random_tensors(shape, 2),
                              random_tensors(Shape{{DType::kFloat32}, {1001}}, 3)};
  std::vector<Tensors>& values = own(before);
  auto statuses = run(values, {0, 1, 2}, 60s);
  // Whoever found the mismatch, every member's failure says what it was (a late part of the
  // failed round is answered with the round's failure).
  expect_failed_unchanged(statuses, {0, 1, 2}, before, values, "tensors differ");
}

TEST_F(TransportBackendTest, MemberWithOtherDtypesIsRefusedAndTheRoundFailsForAll) {
  start(2);
  std::vector<Tensors> before{random_tensors(Shape{{DType::kFloat32}, {100}}, 1),
                              random_tensors(Shape{{DType::kFloat16}, {100}}, 2)};
  std::vector<Tensors>& values = own(before);
  auto statuses = run(values, {0, 1}, 60s);
  expect_failed_unchanged(statuses, {0, 1}, before, values, "is float");
}

TEST_F(TransportBackendTest, MissingMemberFailsEveryOtherByItsDeadline) {
  start(3);
  const Shape shape{{DType::kFloat32}, {5000}};
  std::vector<Tensors> before{random_tensors(shape, 1), random_tensors(shape, 2),
                              random_tensors(shape, 3)};
  std::vector<Tensors>& values = own(before);
  // Member 2 serves but never enters the round: it holds the others' parts and never replies.
  auto statuses = run(values, {0, 1}, 1500ms);
  expect_failed_unchanged(statuses, {0, 1}, before, values, members_[2].server->address());
  // The next round without it succeeds.
  values = before;
  std::vector<Status> next(2);
  std::thread t([&] {
    RoundReport report;
    auto refs = values[1].refs();
    next[1] = members_[1].backend->all_reduce_mean(group_for(1, 2, 2), refs, Deadline::after(60s),
                                                   report);
  });
  RoundReport report;
  auto refs = values[0].refs();
  next[0] =
      members_[0].backend->all_reduce_mean(group_for(0, 2, 2), refs, Deadline::after(60s), report);
  t.join();
  ASSERT_TRUE(next[0].is_ok()) << next[0].to_string();
  ASSERT_TRUE(next[1].is_ok()) << next[1].to_string();
  expect_exact_mean({before[0], before[1]}, {values[0], values[1]});
}

TEST_F(TransportBackendTest, VanishedMemberFailsEveryOtherWithItsName) {
  start(3);
  const Shape shape{{DType::kFloat32}, {5000}};
  std::vector<Tensors> before{random_tensors(shape, 1), random_tensors(shape, 2),
                              random_tensors(shape, 3)};
  std::vector<Tensors>& values = own(before);
  const std::string gone = members_[2].server->address();
  std::thread killer([&] { members_[2].stop(); });  // its process is gone, mid-round or before
  auto statuses = run(values, {0, 1}, 30s);
  killer.join();
  expect_failed_unchanged(statuses, {0, 1}, before, values, gone);
}

// Waits until `backend` holds `n` parts of rounds it has not entered, or 60 s.
bool wait_held(const TransportBackend& backend, size_t n) {
  const Deadline deadline = Deadline::after(60s);
  while (backend.held_parts() < n) {
    if (deadline.expired()) return false;
    std::this_thread::sleep_for(1ms);  // polls a condition; the outcome never depends on timing
  }
  return true;
}

TEST_F(TransportBackendTest, PartsThatArriveBeforeTheOwnerEntersAreHeldAndJoinItsRound) {
  TransportBackendOptions options;
  options.chunk_elements = 100;
  start(2, options);
  const Shape shape{{DType::kFloat32}, {1000}};  // member 1 sends member 0 five chunks
  std::vector<Tensors> before{random_tensors(shape, 1), random_tensors(shape, 2)};
  std::vector<Tensors>& values = own(before);
  Status second;
  std::thread t([&] {
    RoundReport report;
    auto refs = values[1].refs();
    second = members_[1].backend->all_reduce_mean(group_for(1), refs, Deadline::after(60s), report);
  });
  ASSERT_TRUE(wait_held(*members_[0].backend, 5));
  RoundReport report;
  auto refs = values[0].refs();
  Status first =
      members_[0].backend->all_reduce_mean(group_for(0), refs, Deadline::after(60s), report);
  t.join();
  ASSERT_TRUE(first.is_ok()) << first.to_string();
  ASSERT_TRUE(second.is_ok()) << second.to_string();
  EXPECT_EQ(members_[0].backend->held_parts(), 0u);
  expect_exact_mean(before, values);
}

TEST_F(TransportBackendTest, LatePartsOfAFinishedRoundAreRefused) {
  start(2);
  const Shape shape{{DType::kFloat32}, {10}};
  std::vector<Tensors>& values = own({random_tensors(shape, 1), random_tensors(shape, 2)});
  auto statuses = run(values, {0, 1}, 60s, /*round=*/3);
  ASSERT_TRUE(statuses[0].is_ok() && statuses[1].is_ok());
  auto worker = transport::Worker::create(context_, "late").value();
  auto client = transport::rpc::Client::create(worker);
  auto late = [&](uint64_t round) {
    Group g = group_for(1, round);
    PartHeader h;
    h.key_hash = key_fingerprint(g.key);
    h.group_hash = group_fingerprint(g);
    h.round = round;
    h.members = 2;
    h.sender = 1;
    h.part = 0;
    h.total_elements = 10;
    h.chunk_elements = TransportBackendOptions{}.chunk_elements;
    h.count = 5;
    h.segments = {{DType::kFloat32, 5}};
    transport::Message request;
    request.metadata = encode_part_header(h);
    request.tensors.push_back(transport::Buffer::allocate_host(20));
    return client->call(members_[0].server->address(), kPartMethod, std::move(request),
                        Deadline::after(60s));
  };
  Status st = late(3).get().status();  // the round that just succeeded
  EXPECT_EQ(st.code(), StatusCode::kCanceled) << st.to_string();
  EXPECT_NE(st.message().find("already succeeded"), std::string::npos) << st.to_string();
  // A round this member never entered: held (round numbers are the leaders', in no order) until
  // the member's next round under the key shows it was another group's.
  auto other = late(2);
  ASSERT_TRUE(wait_held(*members_[0].backend, 1));
  auto next = run(values, {0, 1}, 60s, /*round=*/4);
  ASSERT_TRUE(next[0].is_ok() && next[1].is_ok());
  st = other.get().status();
  EXPECT_EQ(st.code(), StatusCode::kCanceled) << st.to_string();
  EXPECT_NE(st.message().find("not this member's"), std::string::npos) << st.to_string();
  EXPECT_EQ(members_[0].backend->held_parts(), 0u);
  client->close();
  worker->stop();
}

TEST_F(TransportBackendTest, MembersThatCompressDifferentlyAreRefused) {
  start(1);
  TransportBackendOptions compressed;
  compressed.compression = quant::Scheme::kBlockAbsmaxU8;
  start(1, compressed);  // member 1 compresses, member 0 does not
  const Shape shape{{DType::kFloat32}, {100}};
  std::vector<Tensors> before{random_tensors(shape, 1), random_tensors(shape, 2)};
  std::vector<Tensors>& values = own(before);
  auto statuses = run(values, {0, 1}, 60s);
  expect_failed_unchanged(statuses, {0, 1}, before, values, "block_absmax_u8");
}

TEST_F(TransportBackendTest, ARoundPastItsDeadlineFailsAndChangesNothing) {
  start(2);
  const Shape shape{{DType::kFloat32}, {100}};
  std::vector<Tensors> before{random_tensors(shape, 1), random_tensors(shape, 2)};
  std::vector<Tensors>& values = own(before);
  RoundReport report;
  auto refs = values[0].refs();
  Status st = members_[0].backend->all_reduce_mean(
      group_for(0), refs, Deadline(SteadyClock::now() - Milliseconds(1)), report);
  EXPECT_FALSE(st.is_ok());
  EXPECT_EQ(values[0].storage, before[0].storage);
}

TEST_F(TransportBackendTest, OptionsItCannotRunAreRefused) {
  start(1);
  TransportBackendOptions options;
  options.compression = quant::Scheme::kBlockAffineU8;
  auto backend = TransportBackend::create(members_[0].server, members_[0].client, options);
  ASSERT_FALSE(backend.is_ok());
  EXPECT_NE(backend.status().message().find("block_absmax_u8 only"), std::string::npos);
  options = {};
  options.chunk_elements = 0;
  EXPECT_FALSE(TransportBackend::create(members_[0].server, members_[0].client, options).is_ok());
  options = {};
  options.compression = quant::Scheme::kBlockAbsmaxU8;
  options.compression_block_size = 100;
  EXPECT_FALSE(TransportBackend::create(members_[0].server, members_[0].client, options).is_ok());
}

// Raw rpc calls on a backend's method: what a broken or hostile peer could send.
class PartRefusal : public TransportBackendTest {
 protected:
  void SetUp() override {
    TransportBackendTest::SetUp();
    TransportBackendOptions options;
    options.max_early_bytes = 1000;
    start(1, options);
    caller_worker_ = transport::Worker::create(context_, "caller").value();
    caller_ = transport::rpc::Client::create(caller_worker_);
  }
  void TearDown() override {
    caller_->close();
    caller_worker_->stop();
    TransportBackendTest::TearDown();
  }

  Status call(std::vector<uint8_t> metadata, std::vector<uint64_t> tensor_bytes) {
    transport::Message request;
    request.metadata = std::move(metadata);
    for (uint64_t bytes : tensor_bytes)
      request.tensors.push_back(transport::Buffer::allocate_host(bytes));
    auto reply = caller_
                     ->call(members_[0].server->address(), kPartMethod, std::move(request),
                            Deadline::after(30s))
                     .get();
    return reply.status();
  }

  PartHeader header(uint64_t round, uint64_t elements) {
    PartHeader h;
    h.key_hash = key_fingerprint("run42.dense");
    h.group_hash = 99;
    h.round = round;
    h.members = 2;
    h.sender = 1;
    h.part = 0;
    h.total_elements = elements * 2;
    h.chunk_elements = elements;
    h.offset = 0;
    h.count = elements;
    h.segments = {{DType::kFloat32, elements}};
    return h;
  }

  std::shared_ptr<transport::Worker> caller_worker_;
  std::shared_ptr<transport::rpc::Client> caller_;
};

TEST_F(PartRefusal, GarbageMetadataIsRefused) {
  Status st = call({1, 2, 3}, {});
  EXPECT_EQ(st.code(), StatusCode::kProtocol) << st.to_string();
  EXPECT_NE(st.message().find("averaging part"), std::string::npos) << st.to_string();
}

TEST_F(PartRefusal, PayloadThatDisagreesWithItsHeaderIsRefusedBeforeAllocation) {
  // The header announces 64 Mi elements (256 MiB); the frame brings 16 bytes. The allocator
  // compares the sizes before allocating anything.
  Status st = call(encode_part_header(header(1, 1 << 24)), {16});
  EXPECT_EQ(st.code(), StatusCode::kProtocol) << st.to_string();
  EXPECT_NE(st.message().find("header says"), std::string::npos) << st.to_string();
  st = call(encode_part_header(header(1, 4)), {16, 16});
  EXPECT_EQ(st.code(), StatusCode::kProtocol) << st.to_string();
}

TEST_F(PartRefusal, OversizedClaimsAreRefusedByTheDecoder) {
  auto h = header(1, 4);
  h.total_elements = uint64_t{1} << 40;
  h.chunk_elements = uint64_t{1} << 30;
  Status st = call(encode_part_header(h), {16});
  EXPECT_EQ(st.code(), StatusCode::kProtocol) << st.to_string();
  EXPECT_NE(st.message().find("limit"), std::string::npos) << st.to_string();
}

TEST_F(PartRefusal, EarlyPartsBeyondTheHoldingBudgetAreRefused) {
  // 250 fp32 elements fit the 1000-byte budget; a second such part of the same round does not.
  std::promise<Status> first;
  auto first_future = first.get_future();
  transport::Message request;
  request.metadata = encode_part_header(header(5, 250));
  request.tensors.push_back(transport::Buffer::allocate_host(1000));
  caller_->call(members_[0].server->address(), kPartMethod, std::move(request),
                Deadline::after(30s),
                [&first](Result<transport::Message> r) { first.set_value(r.status()); });
  auto second = header(5, 250);
  second.sender = 0;  // another contribution, held budget already spent
  second.part = 1;
  second.offset = 250;
  Status st = call(encode_part_header(second), {1000});
  EXPECT_EQ(st.code(), StatusCode::kTooLarge) << st.to_string();
  // A third round while rounds 5 is held, and the default of 2 rounds: round 6 fits, round 7 not.
  st = call(encode_part_header(header(7, 1)), {4});
  EXPECT_TRUE(st.code() == StatusCode::kUnavailable || st.code() == StatusCode::kTooLarge)
      << st.to_string();
  // Closing the backend answers the held part.
  members_[0].backend->close();
  Status held = first_future.get();
  EXPECT_EQ(held.code(), StatusCode::kUnavailable) << held.to_string();
}

}  // namespace
}  // namespace hivemind::averaging
