// The expert server end to end over the transport, with a raw RPC client.
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/server/server.h>
#include <hivemind/transport/swarm_key.h>

#include "scaled_linear_expert.h"
#include "server_test_util.h"

namespace hivemind::server {
namespace {

using namespace std::chrono_literals;
using testing::RawClient;

constexpr int64_t kHidden = 16;
constexpr uint64_t kSeed = 7;

struct Declared {
  std::mutex mutex;
  std::vector<std::string> uids;
  std::string endpoint;
  DhtTime expiration = 0;
  int calls = 0;
};

ServerOptions small_server(std::vector<std::string> uids, Declared* declared = nullptr) {
  ::setenv("HIVEMIND_SPIN_US", "0", 1);  // the shared 2-core machine: no busy polling in tests
  ServerOptions o;
  o.expert_cls = "ffn";
  o.hidden_dim = kHidden;
  o.expert_uids = std::move(uids);
  o.seed = kSeed;
  o.host = "127.0.0.1";
  o.port = 0;
  o.transport = "tcp";
  o.compression = "none";
  o.optimizer = "sgd";
  o.lr = 0.1;
  o.max_batch_size = 64;
  o.cpu_bind = "none";
  o.stats_report_interval = 0;
  o.update_period = 60;
  o.grace_period = 20;
  o.declare = [declared](std::span<const std::string> uids, const std::string& endpoint,
                         DhtTime expiration, Deadline) -> Status {
    if (declared == nullptr) return Status::ok();
    std::lock_guard lock(declared->mutex);
    declared->uids.assign(uids.begin(), uids.end());
    declared->endpoint = endpoint;
    declared->expiration = expiration;
    ++declared->calls;
    return Status::ok();
  };
  return o;
}

std::unique_ptr<Server> start(ServerOptions o) {
  auto server = Server::create(std::move(o));
  if (!server.is_ok()) {
    ADD_FAILURE() << server.status().to_string();
    return nullptr;
  }
  Status started = (*server)->start();
  EXPECT_TRUE(started.is_ok()) << started.to_string();
  return std::move(server).value();
}

// Calls `uid` of `server` over the network (info, one forward, one backward) and compares each with
// the trainer-side rebuild of its weights, make_expert(cls, kHidden, uid, kSeed), stepped here with
// the server's SGD (lr 0.1).
void expect_served_like_a_local_rebuild(Server& server, const std::string& cls,
                                        const std::string& uid) {
  RawClient client;
  const std::string address = server.address();
  auto info_reply = client.call(address, protocol::kInfoMethod, uid);
  ASSERT_TRUE(info_reply.is_ok()) << info_reply.status().to_string();
  auto info = protocol::decode_expert_info(info_reply->metadata).value();
  EXPECT_EQ(info.uid, uid);
  EXPECT_EQ(info.expert_cls, cls);
  ASSERT_EQ(info.inputs.size(), 1u);
  EXPECT_EQ(info.inputs[0].shape, std::vector<int64_t>{kHidden});
  EXPECT_EQ(info.max_batch_size, 64u);

  auto reference = runtime::make_expert(cls, kHidden, uid, kSeed).value();
  torch::Tensor x = torch::randn({3, kHidden});
  auto y = client.tensors(address, protocol::kForwardMethod, uid, {x});
  ASSERT_TRUE(y.is_ok()) << y.status().to_string();
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose((*y)[0], reference->forward({x})[0], 1e-6, 1e-6));
  }
  torch::Tensor g = torch::randn({3, kHidden});
  auto gx = client.tensors(address, protocol::kBackwardMethod, uid, {x, g});
  ASSERT_TRUE(gx.is_ok()) << gx.status().to_string();
  torch::Tensor xr = x.clone().requires_grad_(true);
  reference->forward({xr})[0].backward(g);
  EXPECT_TRUE(torch::allclose((*gx)[0], xr.grad(), 1e-5, 1e-6));
  // One SGD step happened on the server, the same as here.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : reference->parameters())
      p -= 0.1 * p.grad();
  }
  auto server_params = server.backend(uid)->parameters();
  auto ref_params = reference->parameters();
  ASSERT_EQ(server_params.size(), ref_params.size());
  for (size_t i = 0; i < ref_params.size(); ++i)
    EXPECT_TRUE(torch::allclose(server_params[i], ref_params[i], 1e-5, 1e-6)) << i;
  EXPECT_EQ(server.backend(uid)->update_count(), 1);
}

TEST(ServerTest, InfoForwardBackwardMatchALocalReference) {
  Declared declared;
  auto server = start(small_server({"ffn.0.0", "ffn.0.1"}, &declared));
  ASSERT_TRUE(server);
  expect_served_like_a_local_rebuild(*server, "ffn", "ffn.0.1");
  EXPECT_EQ(server->backend("ffn.0.0")->update_count(), 0);

  std::lock_guard lock(declared.mutex);
  EXPECT_EQ(declared.calls, 1);
  EXPECT_EQ(declared.uids, (std::vector<std::string>{"ffn.0.0", "ffn.0.1"}));
  EXPECT_EQ(declared.endpoint, server->address());
  EXPECT_GT(declared.expiration, SystemClock::instance().dht_now());
}

// --scheduler none is hivemind's constant learning rate: the warm-up steps given with it are
// ignored, so the first step is taken at the full lr (with linear it would be lr / 1000).
TEST(ServerTest, SchedulerNoneKeepsTheLearningRateConstant) {
  ServerOptions o = small_server({"ffn.0.0"});
  o.scheduler = "none";
  o.warmup_steps = 1000;
  o.total_steps = 2000;
  auto server = start(o);
  ASSERT_TRUE(server);
  expect_served_like_a_local_rebuild(*server, "ffn", "ffn.0.0");
}

// A class registered from C++ (not in the zoo) is hosted like the zoo's: validated, built from the
// seed, served, trained; the trainer-side make_expert rebuilds it.
TEST(ServerTest, ACppRegisteredExpertClassIsHostedAndMatchesItsLocalBuild) {
  ASSERT_TRUE(test_experts::register_scaled_linear().is_ok());
  ServerOptions o = small_server({"sl.0.0", "sl.0.1"});
  o.expert_cls = test_experts::kScaledLinearClass;
  ASSERT_TRUE(validate(o).is_ok()) << validate(o).to_string();
  auto server = start(o);
  ASSERT_TRUE(server);
  expect_served_like_a_local_rebuild(*server, test_experts::kScaledLinearClass, "sl.0.1");
  EXPECT_EQ(server->backend("sl.0.0")->update_count(), 0);
}

TEST(ServerTest, BadRequestsGetClearErrorsAndTheServerKeepsServing) {
  auto server = start(small_server({"ffn.0.0"}));
  ASSERT_TRUE(server);
  RawClient client;
  const std::string address = server->address();
  auto unknown =
      client.tensors(address, protocol::kForwardMethod, "ffn.9.9", {torch::randn({1, kHidden})});
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("ffn.9.9"), std::string::npos);
  auto shape = client.tensors(address, protocol::kForwardMethod, "ffn.0.0",
                              {torch::randn({2, kHidden + 1})});
  EXPECT_EQ(shape.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(shape.status().message().find("expected float32[batch, 16]"), std::string::npos)
      << shape.status().message();
  auto count =
      client.tensors(address, protocol::kBackwardMethod, "ffn.0.0", {torch::randn({2, kHidden})});
  EXPECT_NE(count.status().message().find("the inputs, then one gradient per output"),
            std::string::npos)
      << count.status().message();
  auto big =
      client.tensors(address, protocol::kForwardMethod, "ffn.0.0", {torch::randn({65, kHidden})});
  EXPECT_FALSE(big.is_ok());
  EXPECT_NE(big.status().message().find("max_batch_size"), std::string::npos)
      << big.status().message();
  // Garbage instead of an encoded tensor.
  auto junk = std::make_shared<std::vector<uint8_t>>(100, 0xab);
  auto garbage = client.call(address, protocol::kForwardMethod, "ffn.0.0",
                             {transport::Buffer::wrap(junk->data(), junk->size(),
                                                      transport::MemoryType::kHost, -1, junk)});
  EXPECT_FALSE(garbage.is_ok());
  EXPECT_NE(garbage.status().message().find("tensor 0"), std::string::npos)
      << garbage.status().message();
  auto bad_call = client.call(address, protocol::kInfoMethod, "");
  EXPECT_FALSE(bad_call.is_ok());
  // Still serving.
  auto ok =
      client.tensors(address, protocol::kForwardMethod, "ffn.0.0", {torch::randn({2, kHidden})});
  EXPECT_TRUE(ok.is_ok()) << ok.status().to_string();
}

// The value of the sample `series` (name and labels exactly as rendered) in Prometheus text, or -1.
double sample(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (text.compare(at, prefix.size(), prefix) == 0)
      return std::stod(text.substr(at + prefix.size(), end - at - prefix.size()));
    at = end + 1;
  }
  return -1;
}

TEST(ServerTest, MetricsCountRequestsErrorsBatchesAndBytes) {
  ServerOptions options = small_server({"ffn.0.0", "ffn.0.1"});
  options.metrics_port = 0;
  auto server = start(std::move(options));
  ASSERT_TRUE(server);
  EXPECT_EQ(server->metrics_address().rfind("http://127.0.0.1:", 0), 0u)
      << server->metrics_address();
  RawClient client;
  const std::string address = server->address();
  torch::Tensor x = torch::randn({3, kHidden});
  ASSERT_TRUE(client.tensors(address, protocol::kForwardMethod, "ffn.0.1", {x}).is_ok());
  ASSERT_TRUE(
      client.tensors(address, protocol::kBackwardMethod, "ffn.0.1", {x, torch::randn({3, kHidden})})
          .is_ok());
  EXPECT_FALSE(
      client.tensors(address, protocol::kForwardMethod, "ffn.0.0", {torch::randn({2, kHidden + 1})})
          .is_ok());

  const std::string text = server->metrics_text();
  auto series = [](const char* name, const char* uid, const char* method) {
    return fmt::format("{}{{expert=\"{}\",method=\"{}\"}}", name, uid, method);
  };
  EXPECT_EQ(sample(text, series("hivemind_expert_requests_total", "ffn.0.1", "forward")), 1)
      << text;
  EXPECT_EQ(sample(text, series("hivemind_expert_requests_total", "ffn.0.1", "backward")), 1);
  EXPECT_EQ(sample(text, series("hivemind_expert_errors_total", "ffn.0.1", "forward")), 0);
  EXPECT_EQ(sample(text, series("hivemind_expert_requests_total", "ffn.0.0", "forward")), 1);
  EXPECT_EQ(sample(text, series("hivemind_expert_errors_total", "ffn.0.0", "forward")), 1);
  // The rejected request never reached a batch; the good one made a batch of 3.
  EXPECT_EQ(sample(text, series("hivemind_expert_batch_size_count", "ffn.0.0", "forward")), 0);
  EXPECT_EQ(sample(text, series("hivemind_expert_batch_size_sum", "ffn.0.1", "forward")), 3);
  EXPECT_EQ(
      sample(text,
             "hivemind_expert_batch_size_bucket{expert=\"ffn.0.1\",method=\"forward\",le=\"2\"}"),
      0);
  EXPECT_EQ(
      sample(text,
             "hivemind_expert_batch_size_bucket{expert=\"ffn.0.1\",method=\"forward\",le=\"4\"}"),
      1);
  EXPECT_EQ(sample(text, series("hivemind_expert_request_seconds_count", "ffn.0.1", "backward")),
            1);
  EXPECT_EQ(sample(text, series("hivemind_expert_request_seconds_count", "ffn.0.0", "forward")), 1);
  EXPECT_EQ(sample(text, series("hivemind_expert_queue_depth", "ffn.0.1", "forward")), 0);
  EXPECT_EQ(sample(text, "hivemind_expert_updates_total{expert=\"ffn.0.1\"}"), 1);
  EXPECT_EQ(sample(text, "hivemind_expert_updates_total{expert=\"ffn.0.0\"}"), 0);
  EXPECT_EQ(sample(text, "hivemind_server_experts"), 2);
  EXPECT_EQ(sample(text, "hivemind_transport_requests_total{transport=\"tcp\"}"), 3);
  EXPECT_EQ(sample(text, "hivemind_transport_error_replies_total{transport=\"tcp\"}"), 1);
  // Three float32 requests of 3, 3+3 and 2 rows of 16: more than their payloads alone.
  EXPECT_GT(sample(text, "hivemind_transport_bytes_received_total{transport=\"tcp\"}"),
            (3 + 6 + 2) * kHidden * 4);
  EXPECT_GT(sample(text, "hivemind_transport_bytes_sent_total{transport=\"tcp\"}"),
            (3 + 3) * kHidden * 4);
}

TEST(ServerTest, ConcurrentRequestsAreBatchedAndEachGetsItsOwnRowsInEightBit) {
  ServerOptions o = small_server({"ffn.0.0"});
  o.compression = "block_absmax_u8";
  o.max_batch_size = 32;
  auto server = start(o);
  ASSERT_TRUE(server);
  RawClient client;
  auto reference = runtime::make_expert("ffn", kHidden, "ffn.0.0", kSeed).value();
  std::vector<torch::Tensor> xs;
  std::vector<std::future<Result<transport::Message>>> calls;
  for (int i = 0; i < 24; ++i) {
    xs.push_back(torch::randn({1 + i % 5, kHidden}));
    calls.push_back(client.call_async(server->address(), protocol::kForwardMethod, "ffn.0.0",
                                      {testing::encode(xs.back(), quant::Scheme::kBlockAbsmaxU8)}));
  }
  for (size_t i = 0; i < calls.size(); ++i) {
    ASSERT_EQ(calls[i].wait_for(60s), std::future_status::ready);
    auto reply = calls[i].get();
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    // What the server computed: the forward of the dequantized input, then 8-bit encoded.
    torch::NoGradGuard no_grad;
    quant::EncodeOptions u8;
    u8.scheme = quant::Scheme::kBlockAbsmaxU8;
    torch::Tensor xq = quant::decode_tensor(quant::encode_tensor(xs[i], u8).value()).value();
    torch::Tensor expected =
        quant::decode_tensor(quant::encode_tensor(reference->forward({xq})[0], u8).value()).value();
    torch::Tensor got = testing::decode(reply->tensors[0]);
    ASSERT_EQ(got.sizes(), xs[i].sizes());
    EXPECT_TRUE(torch::allclose(got, expected, 1e-4, 1e-3)) << "request " << i;
  }
  const auto stats = server->stats().at(0).forward;
  EXPECT_EQ(stats.tasks_completed, 24u);
  EXPECT_LE(stats.largest_batch, 32);
}

TEST(ServerTest, CheckpointsAreWrittenAndLoadedAtStart) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hm_rt_srv_ckpt_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::vector<torch::Tensor> trained;
  {
    ServerOptions o = small_server({"ffn.1.0"});
    o.checkpoint_dir = dir.string();
    auto server = start(o);
    ASSERT_TRUE(server);
    RawClient client;
    auto r = client.tensors(server->address(), protocol::kBackwardMethod, "ffn.1.0",
                            {torch::randn({4, kHidden}), torch::randn({4, kHidden})});
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    trained = server->backend("ffn.1.0")->parameters();
    ASSERT_TRUE(server->shutdown(20s).is_ok());  // drains and writes the final checkpoint
  }
  ASSERT_TRUE(std::filesystem::exists(dir / "ffn.1.0.pt"));
  ServerOptions o = small_server({"ffn.1.0"});
  o.checkpoint_dir = dir.string();
  auto resumed = Server::create(o);
  ASSERT_TRUE(resumed.is_ok()) << resumed.status().to_string();
  EXPECT_EQ((*resumed)->backend("ffn.1.0")->update_count(), 1);
  auto params = (*resumed)->backend("ffn.1.0")->parameters();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::equal(params[i], trained[i]));
  resumed->reset();
  // A checkpoint of another expert class is refused at start, saying what to do.
  ServerOptions other = small_server({"ffn.1.0"});
  other.checkpoint_dir = dir.string();
  other.expert_cls = "ffn_v08";
  auto refused = Server::create(other);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("move the file away"), std::string::npos)
      << refused.status().message();
  std::filesystem::remove_all(dir);
}

TEST(ServerTest, ShutdownFinishesQueuedRequestsThenRefusesNewOnes) {
  ServerOptions o = small_server({"ffn.0.0"});
  o.min_batch_size = 64;         // the request below waits for a batch that never fills...
  o.batch_timeout_ms = 3600000;  // ...for an hour, unless the drain runs it
  auto server = start(o);
  ASSERT_TRUE(server);
  RawClient client;
  auto pending = client.call_async(server->address(), protocol::kForwardMethod, "ffn.0.0",
                                   {testing::encode(torch::randn({2, kHidden}))});
  // Wait (bounded) until the request sits in the queue.
  const Deadline queued_by = Deadline::after(30s);
  while (server->stats().at(0).forward.queued_tasks == 0 && !queued_by.expired())
    std::this_thread::yield();
  ASSERT_EQ(server->stats().at(0).forward.queued_tasks, 1u);
  const std::string address = server->address();
  server->request_shutdown();
  EXPECT_TRUE(server->wait().is_ok());
  ASSERT_EQ(pending.wait_for(30s), std::future_status::ready);
  auto reply = pending.get();
  EXPECT_TRUE(reply.is_ok()) << reply.status().to_string();
  auto late = client.call(address, protocol::kForwardMethod, "ffn.0.0",
                          {testing::encode(torch::randn({1, kHidden}))});
  EXPECT_FALSE(late.is_ok());
}

TEST(ServerTest, ExpertsAppearInTheDhtAndPatternsSkipLiveUids) {
  // First server: a new swarm (its DHT node shares the server's port), declaring x.0 and x.1.
  ServerOptions first_options = small_server({"x.0", "x.1"});
  first_options.declare = nullptr;
  auto first = start(first_options);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->dht_address(), first->address());

  // A trainer-side DHT node joins through it and finds the experts at the server's address.
  dht::DhtOptions peer;
  peer.initial_peers = {first->dht_address()};
  auto node = dht::Dht::start(peer);
  ASSERT_TRUE(node.is_ok()) << node.status().to_string();
  std::vector<std::string> wanted = {"x.0", "x.1", "x.2"};
  auto found = dht::get_experts(**node, wanted, Deadline::after(30s));
  ASSERT_TRUE(found.is_ok()) << found.status().to_string();
  ASSERT_TRUE((*found)[0].has_value());
  EXPECT_EQ((*found)[0]->endpoint, first->address());
  EXPECT_TRUE((*found)[1].has_value());
  EXPECT_FALSE((*found)[2].has_value());

  // Second server: the pattern x.[0:4] with two experts must take the two uids nobody serves yet.
  ServerOptions second_options = small_server({});
  second_options.declare = nullptr;
  second_options.expert_pattern = "x.[0:4]";
  second_options.num_experts = 2;
  second_options.initial_peers = {first->dht_address()};
  auto second = start(second_options);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->expert_uids(), (std::vector<std::string>{"x.2", "x.3"}));
  auto now_found =
      dht::get_experts(**node, std::vector<std::string>{"x.2", "x.3"}, Deadline::after(30s));
  ASSERT_TRUE(now_found.is_ok());
  ASSERT_TRUE((*now_found)[1].has_value());
  EXPECT_EQ((*now_found)[1]->endpoint, second->address());

  // After shutdown the server's DHT node is gone: a scrape still works and reads no peers.
  ASSERT_TRUE(second->shutdown(Milliseconds(5000)).is_ok());
  EXPECT_NE(second->metrics_text().find("\nhivemind_dht_routing_table_size 0\n"), std::string::npos)
      << second->metrics_text();
}

TEST(ServerTest, AKeyedServerProcessesNothingForAStranger) {
  char dir_template[] = "/tmp/hm-server-key-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string key_file = dir + "/swarm.key";
  auto key = std::make_shared<const transport::SwarmKey>(transport::SwarmKey::generate().value());
  ASSERT_TRUE(key->write_new(key_file).is_ok());
  ServerOptions o = small_server({"ffn.0.0"});
  o.declare = nullptr;  // its own DHT node on the same port, keyed too
  o.swarm_key_file = key_file;
  auto server = start(o);
  ASSERT_TRUE(server);
  std::vector<torch::Tensor> before;
  for (const auto& p : server->backend("ffn.0.0")->parameters())
    before.push_back(p.detach().clone());

  // A keyless stranger: info, forward and backward all refused, at once and saying why.
  RawClient stranger;
  torch::Tensor x = torch::randn({3, kHidden});
  torch::Tensor g = torch::randn({3, kHidden});
  auto info = stranger.call(server->address(), protocol::kInfoMethod, "ffn.0.0");
  ASSERT_FALSE(info.is_ok());
  EXPECT_NE(info.status().message().find("peer did not authenticate"), std::string::npos)
      << info.status().to_string();
  EXPECT_FALSE(
      stranger.tensors(server->address(), protocol::kBackwardMethod, "ffn.0.0", {x, g}).is_ok());
  // A stranger with another key: refused as a key mismatch.
  RawClient other_swarm(
      std::make_shared<const transport::SwarmKey>(transport::SwarmKey::generate().value()));
  auto mismatch =
      other_swarm.tensors(server->address(), protocol::kBackwardMethod, "ffn.0.0", {x, g});
  ASSERT_FALSE(mismatch.is_ok());
  EXPECT_NE(mismatch.status().message().find("swarm key mismatch"), std::string::npos)
      << mismatch.status().to_string();
  // A keyless DHT node cannot join through the server's DHT, so it cannot write it either.
  dht::DhtOptions peer;
  peer.initial_peers = {server->dht_address()};
  peer.bootstrap_timeout = Milliseconds(5000);
  auto node = dht::Dht::start(peer);
  EXPECT_FALSE(node.is_ok());

  // Nothing ran for them: no optimizer step, the same weights.
  EXPECT_EQ(server->backend("ffn.0.0")->update_count(), 0);
  auto after = server->backend("ffn.0.0")->parameters();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(torch::equal(after[i], before[i])) << i;
  EXPECT_NE(server->metrics_text().find("hivemind_transport_auth_refusals_total"),
            std::string::npos);

  // A member with the key is served as usual.
  RawClient member(key);
  auto gx = member.tensors(server->address(), protocol::kBackwardMethod, "ffn.0.0", {x, g});
  ASSERT_TRUE(gx.is_ok()) << gx.status().to_string();
  EXPECT_EQ(server->backend("ffn.0.0")->update_count(), 1);
  std::filesystem::remove_all(dir);
}

TEST(ServerTest, OptionsAreValidatedWithMessagesThatSayWhatToFix) {
  ServerOptions o;
  o.expert_uids = {"bad uid", "x.1", "x.1"};
  o.expert_pattern = "x.[0:2]";
  o.min_batch_size = 100;
  o.max_batch_size = 10;
  o.compression = "zip";
  o.device = "tpu";
  o.expert_cls = "moe_of_moes";
  Status s = validate(o);
  ASSERT_FALSE(s.is_ok());
  for (const char* expected :
       {"--expert_cls 'moe_of_moes' is unknown; use one of: ffn, ffn_v08, transformer, nop",
        "exactly one of --expert_uids and --expert_pattern", "'bad uid' is not a uid",
        "listed twice", "--min_batch_size (100)", "--compression 'zip'", "--device"}) {
    EXPECT_NE(s.message().find(expected), std::string::npos) << expected << "\n" << s.message();
  }
  // The list of classes is the registry's, a C++-registered class included.
  ASSERT_TRUE(test_experts::register_scaled_linear().is_ok());
  EXPECT_NE(validate(o).message().find(test_experts::kScaledLinearClass), std::string::npos);
  EXPECT_EQ(expand_expert_pattern("e.[0:2].[3:5]", 0, 0).value(),
            (std::vector<std::string>{"e.0.3", "e.0.4", "e.1.3", "e.1.4"}));
  auto some = expand_expert_pattern("e.[0:10].[0:10]", 7, 1).value();
  EXPECT_EQ(some.size(), 7u);
  EXPECT_EQ(std::set<std::string>(some.begin(), some.end()).size(), 7u);
  EXPECT_FALSE(expand_expert_pattern("e.[0:2]", 3, 0).is_ok());
  EXPECT_FALSE(expand_expert_pattern("e.[2:1]", 0, 0).is_ok());
  EXPECT_FALSE(expand_expert_pattern("[0:2]", 0, 0).is_ok());
}

}  // namespace
}  // namespace hivemind::server
