// RemoteExpert and RpcExpertCaller over a real transport on loopback, against a minimal expert
// server written here with the public protocol (so the client is tested without the runtime
// module): the remote forward and the gradients equal a local module's, within the quantization
// error.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <torch/nn.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/client/remote_expert.h>
#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/quant/torch_codec.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

namespace hivemind::client {
namespace {

using transport::Message;

transport::Buffer buffer_over(const torch::Tensor& t) {
  auto keep = std::make_shared<torch::Tensor>(t);
  return transport::Buffer::wrap(t.data_ptr(), static_cast<size_t>(t.numel()),
                                 transport::MemoryType::kHost, -1, std::move(keep));
}

// A one-expert server: y = x W^T + b, answering info/forward/backward. Compute runs on a thread of
// its own (never on the I/O thread), as the real server's runtime does.
class TinyExpertServer {
 public:
  TinyExpertServer(std::string uid, int64_t hidden, quant::Scheme scheme)
      : uid_(std::move(uid)), linear_(torch::nn::Linear(hidden, hidden)) {
    torch::manual_seed(7);
    linear_ = torch::nn::Linear(hidden, hidden);
    info_.uid = uid_;
    info_.expert_cls = "linear";
    info_.max_batch_size = 1024;
    protocol::TensorSchema schema{quant::DType::kFloat32, {hidden}, scheme, 64};
    info_.inputs = {schema};
    info_.outputs = {schema};
    auto context = transport::Context::create().value_or_throw();
    worker_ = transport::Worker::create(context, "test-srv").value_or_throw();
    server_ = transport::rpc::Server::create(worker_, "tcp://127.0.0.1:0").value_or_throw();
    server_->handle(std::string(protocol::kInfoMethod),
                    [this](Message, transport::rpc::Responder r) {
                      {
                        std::lock_guard lock(info_mutex_);
                        ++infos_;
                        if (hold_info_) {
                          held_info_.push_back(std::move(r));
                          info_arrived_.notify_all();
                          return;
                        }
                      }
                      answer_info(std::move(r));
                    });
    for (auto method : {protocol::kForwardMethod, protocol::kBackwardMethod}) {
      server_->handle(std::string(method), [this, method](Message m, transport::rpc::Responder r) {
        compute_.push_back(
            std::thread([this, method, m = std::move(m), r = std::move(r)]() mutable {
              r.reply(compute(method, std::move(m)));
            }));
      });
    }
  }
  ~TinyExpertServer() {
    server_->close();
    for (auto& t : compute_)
      t.join();
  }

  std::string address() const { return server_->address(); }
  torch::nn::Linear& module() { return linear_; }
  std::atomic<int> forwards{0}, backwards{0};

  int infos() {
    std::lock_guard lock(info_mutex_);
    return infos_;
  }
  // From now on, info requests wait for release_info() (held, not answered).
  void hold_info() {
    std::lock_guard lock(info_mutex_);
    hold_info_ = true;
  }
  // Waits (bounded) until `n` requests are held.
  bool wait_held_info(size_t n) {
    std::unique_lock lock(info_mutex_);
    return info_arrived_.wait_for(lock, std::chrono::seconds(30),
                                  [&] { return held_info_.size() >= n; });
  }
  void release_info() {
    std::vector<transport::rpc::Responder> held;
    {
      std::lock_guard lock(info_mutex_);
      hold_info_ = false;
      held.swap(held_info_);
    }
    for (auto& r : held)
      answer_info(std::move(r));
  }

 private:
  void answer_info(transport::rpc::Responder r) {
    Message reply;
    reply.metadata = protocol::encode_expert_info(info_);
    r.reply(std::move(reply));
  }

  Result<Message> compute(std::string_view method, Message m) {
    HIVEMIND_ASSIGN_OR_RETURN(std::string uid, protocol::decode_call(m.metadata));
    if (uid != uid_) return not_found_error("no expert " + uid);
    std::vector<torch::Tensor> tensors;
    for (auto& b : m.tensors) {
      HIVEMIND_ASSIGN_OR_RETURN(auto t, quant::decode_tensor(b.bytes()));
      tensors.push_back(t);
    }
    torch::Tensor result;
    if (method == protocol::kForwardMethod) {
      ++forwards;
      torch::NoGradGuard no_grad;
      result = linear_->forward(tensors.at(0));
    } else {
      ++backwards;
      auto x = tensors.at(0).detach().requires_grad_(true);
      auto y = linear_->forward(x);
      result = torch::autograd::grad({y}, {x}, {tensors.at(1)})[0];
    }
    quant::EncodeOptions options;
    options.scheme = info_.outputs[0].compression;
    options.block_size = info_.outputs[0].block_size;
    HIVEMIND_ASSIGN_OR_RETURN(auto encoded, quant::encode_tensor(result, options));
    Message reply;
    reply.tensors.push_back(buffer_over(encoded));
    return reply;
  }

  std::string uid_;
  torch::nn::Linear linear_;
  protocol::ExpertInfo info_;
  std::mutex info_mutex_;
  std::condition_variable info_arrived_;
  int infos_ = 0;
  bool hold_info_ = false;
  std::vector<transport::rpc::Responder> held_info_;
  std::shared_ptr<transport::Worker> worker_;
  std::shared_ptr<transport::rpc::Server> server_;
  std::vector<std::thread> compute_;
};

class RpcExpertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto context = transport::Context::create().value_or_throw();
    worker_ = transport::Worker::create(context, "test-cli").value_or_throw();
    caller_ = RpcExpertCaller::create(transport::rpc::Client::create(worker_));
  }
  std::shared_ptr<transport::Worker> worker_;
  std::shared_ptr<RpcExpertCaller> caller_;
};

TEST_F(RpcExpertTest, InfoIsFetchedAndCached) {
  TinyExpertServer server("expert.0", 16, quant::Scheme::kNone);
  ExpertAddress ref{"expert.0", server.address()};
  auto info = caller_->info(ref, Deadline::after(Milliseconds(5000)));
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_EQ(info->uid, "expert.0");
  EXPECT_EQ(info->inputs.size(), 1u);
  auto again = caller_->info(ref, Deadline::after(Milliseconds(5000)));
  EXPECT_TRUE(again.is_ok());
  EXPECT_EQ(server.infos(), 1);
}

// An MoE's first forward asks every chosen expert for its info and then calls them, which asks
// again: a fetch in flight is joined by a request whose deadline it covers, not by a later one.
TEST_F(RpcExpertTest, InfoRequestsJoinAFetchInFlightThatCoversTheirDeadline) {
  TinyExpertServer server("expert.0", 16, quant::Scheme::kNone);
  ExpertAddress ref{"expert.0", server.address()};
  server.hold_info();
  std::mutex mutex;
  std::condition_variable done;
  std::vector<Result<protocol::ExpertInfo>> answers;
  auto collect = [&](Result<protocol::ExpertInfo> info) {
    std::lock_guard lock(mutex);
    answers.push_back(std::move(info));
    done.notify_all();
  };
  const Deadline soon = Deadline::after(Milliseconds(20'000));
  caller_->info(ref, soon, collect);
  caller_->info(ref, soon, collect);  // joins the first
  caller_->info(ref, Deadline::after(Milliseconds(40'000)),
                collect);  // outlives it: a fetch of its own
  ASSERT_TRUE(server.wait_held_info(2));
  server.release_info();
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(done.wait_for(lock, std::chrono::seconds(30), [&] { return answers.size() == 3; }));
  }
  for (const auto& info : answers)
    EXPECT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_EQ(server.infos(), 2);
  ASSERT_TRUE(caller_->info(ref, Deadline::after(Milliseconds(5000))).is_ok());
  EXPECT_EQ(server.infos(), 2) << "cached";
}

TEST_F(RpcExpertTest, UnknownExpertIsAClearError) {
  TinyExpertServer server("expert.0", 16, quant::Scheme::kNone);
  RemoteExpert remote(ExpertAddress{"expert.9", server.address()}, caller_);
  try {
    remote->forward(torch::randn({4, 16}));
    FAIL() << "expected an exception";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("expert.9"), std::string::npos) << e.what();
  }
}

// Exact wire (no compression): remote forward and input gradient equal the local module's.
TEST_F(RpcExpertTest, ForwardAndBackwardMatchTheLocalModule) {
  TinyExpertServer server("expert.0", 16, quant::Scheme::kNone);
  RemoteExpert remote(ExpertAddress{"expert.0", server.address()}, caller_);
  torch::manual_seed(1);
  auto x = torch::randn({8, 16}, torch::requires_grad());
  auto y = remote->forward(x);
  auto local_x = x.detach().clone().requires_grad_(true);
  auto local_y = server.module()->forward(local_x);
  EXPECT_TRUE(torch::allclose(y, local_y, 1e-6, 1e-6));
  auto weights = torch::randn({8, 16});
  (y * weights).sum().backward();
  (local_y * weights).sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), local_x.grad(), 1e-6, 1e-6));
  EXPECT_EQ(server.forwards.load(), 1);
  EXPECT_EQ(server.backwards.load(), 1);
}

// 8-bit wire: within the blockwise quantization error of inputs and outputs.
TEST_F(RpcExpertTest, QuantizedWireStaysWithinTheErrorBound) {
  TinyExpertServer server("expert.0", 64, quant::Scheme::kBlockAbsmaxU8);
  RemoteExpert remote(ExpertAddress{"expert.0", server.address()}, caller_);
  torch::manual_seed(2);
  auto x = torch::randn({32, 64}, torch::requires_grad());
  auto y = remote->forward(x);
  auto local_y = server.module()->forward(x.detach());
  double relative = (y - local_y).norm().item<double>() / local_y.norm().item<double>();
  EXPECT_LT(relative, 0.02);
  EXPECT_GT(relative, 0.0);  // it really went through the 8-bit codec
  y.sum().backward();
  ASSERT_TRUE(x.grad().defined());
  auto local_x = x.detach().clone().requires_grad_(true);
  server.module()->forward(local_x).sum().backward();
  double grad_relative =
      (x.grad() - local_x.grad()).norm().item<double>() / local_x.grad().norm().item<double>();
  EXPECT_LT(grad_relative, 0.02);
}

TEST_F(RpcExpertTest, DeadServerFailsWithinTheDeadline) {
  std::string address;
  {
    TinyExpertServer server("expert.0", 16, quant::Scheme::kNone);
    address = server.address();
  }
  RemoteExpertOptions options;
  options.forward_timeout = Milliseconds(2000);
  RemoteExpert remote(ExpertAddress{"expert.0", address}, caller_, options);
  EXPECT_THROW(remote->forward(torch::randn({2, 16})), std::exception);
}

}  // namespace
}  // namespace hivemind::client
