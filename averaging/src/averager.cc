#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include <hivemind/averaging/averager.h>
#include <hivemind/averaging/default_backends.h>
#include <hivemind/averaging/dht_group_source.h>
#include <hivemind/averaging/group_wire.h>
#include <hivemind/averaging/matchmaker.h>
#include <hivemind/common/logging.h>
#include <hivemind/transport/context.h>

namespace hivemind::averaging {

namespace {

constexpr std::string_view kTransportBackend = "transport";

std::string format_bytes(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  if (bytes < 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / 1024);
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

RoundReport closed_report() {
  RoundReport report;
  report.failure = "averager closed";
  return report;
}

Status check_options(const AveragerOptions& options) {
  if (options.key.empty()) return invalid_argument_error("averaging: the key is empty");
  if (options.key.size() > dht::kMaxKeyBytes) {
    return invalid_argument_error(fmt::format("averaging: the key '{}' has {} bytes, more than {}",
                                              options.key, options.key.size(), dht::kMaxKeyBytes));
  }
  if ((options.dht != nullptr) == options.launcher.has_value()) {
    return invalid_argument_error(
        "averaging: set exactly one membership, `dht` (groups through the DHT) or `launcher` "
        "(rank/size from the launcher)");
  }
  if (options.round_timeout <= Milliseconds(0))
    return invalid_argument_error("averaging: round_timeout must be positive");
  if (options.gather_window <= Milliseconds(0) || options.gather_window >= options.round_timeout) {
    return invalid_argument_error(fmt::format(
        "averaging: gather_window ({} ms) must be positive and shorter than round_timeout ({} ms)",
        options.gather_window.count(), options.round_timeout.count()));
  }
  if (options.declaration_ttl <= Milliseconds(0) || options.suspect_for < Milliseconds(0))
    return invalid_argument_error("averaging: declaration_ttl and suspect_for must be positive");
  return Status::ok();
}

}  // namespace

std::string describe(const RoundReport& report) {
  std::string text =
      fmt::format("round {} {}: {} member{}", report.round, report.ok ? "ok" : "failed",
                  report.members.size(), report.members.size() == 1 ? "" : "s");
  if (!report.backend.empty()) text += ", " + report.backend;
  text += fmt::format(", {} sent, {} received, {} ms", format_bytes(report.bytes_sent),
                      format_bytes(report.bytes_received), report.elapsed.count());
  for (const auto& fallback : report.fallbacks)
    text += "; fell back after " + fallback;
  if (!report.ok) text += ": " + report.failure;
  return text;
}

struct Averager::State {
  std::vector<TensorRef> tensors;
  AveragerOptions options;
  std::shared_ptr<transport::Worker> worker;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;
  bool own_worker = false, own_server = false, own_client = false;
  std::vector<std::shared_ptr<Backend>> backends;
  MemberInfo self;
  std::unique_ptr<GroupSource> source;
  std::shared_ptr<Matchmaker> matchmaker;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::promise<RoundReport>> queued;
  bool closed = false;
  std::thread thread;

  void run();
  RoundReport round();
  Backend* backend(std::string_view name) {
    for (const auto& b : backends) {
      if (b->name() == name) return b.get();
    }
    return nullptr;
  }
  // How long close() lets replies this member owes (the means of its last round's part) leave
  // before it cuts their connections: a member that finished its round may still be answering
  // others, who would otherwise see "closed the connection mid-frame" and fail that round.
  static constexpr Milliseconds kReplyDrain{2000};

  void release_transport() {
    if (own_client && client) client->close();
    if (own_server && server) {
      server->wait_idle(Deadline::after(kReplyDrain));
      server->close();
    }
    if (own_worker && worker) worker->stop();
  }
};

Result<std::unique_ptr<Averager>> Averager::create(std::vector<TensorRef> tensors,
                                                   AveragerOptions options) {
  HIVEMIND_RETURN_IF_ERROR(check_options(options));
  HIVEMIND_RETURN_IF_ERROR(check_round_tensors(tensors).with_context("averaging"));
  auto state = std::make_shared<State>();
  state->tensors = std::move(tensors);

  // The transport: shared where the caller gives one, else this averager's own.
  state->worker = options.worker;
  if (!options.server || !options.client) {
    if (!state->worker) {
      HIVEMIND_ASSIGN_OR_RETURN(auto context_options, transport::ContextOptions::from_env());
      HIVEMIND_ASSIGN_OR_RETURN(auto context, transport::Context::create(context_options));
      HIVEMIND_ASSIGN_OR_RETURN(state->worker, transport::Worker::create(context, "hm-avg"));
      state->own_worker = true;
    }
  }
  state->server = options.server;
  if (!state->server) {
    auto server = transport::rpc::Server::create(state->worker, options.listen);
    if (!server.is_ok()) {
      state->release_transport();
      return server.status().with_context("averaging: cannot listen on " + options.listen);
    }
    state->server = std::move(server).value();
    state->own_server = true;
  }
  state->client = options.client;
  if (!state->client) {
    state->client = transport::rpc::Client::create(state->worker);
    state->own_client = true;
  }
  auto fail = [&](Status status) {
    state->release_transport();
    return status;
  };

  state->backends = options.backends;
  if (state->backends.empty()) {
    state->backends = default_backends(
        BackendEnvironment{state->worker, state->server, state->client, options.compression});
  }
  state->self.endpoint = state->server->address();
  for (const auto& backend : state->backends) {
    std::string device_id;
    if (!backend->usable_for(state->tensors, device_id)) continue;
    state->self.backends.emplace_back(backend->name());
    if (state->self.device_id.empty()) state->self.device_id = device_id;
  }
  if (state->self.backends.empty()) {
    return fail(unsupported_error(fmt::format(
        "averaging: none of the {} backends can average these tensors ({} tensors on {})",
        state->backends.size(), state->tensors.size(),
        state->tensors.front().memory == transport::MemoryType::kCuda ? "cuda" : "host")));
  }

  if (options.dht) {
    state->source =
        std::make_unique<DhtGroupSource>(*options.dht, options.key, options.declaration_ttl);
  } else {
    auto source = LauncherGroupSource::create(*options.launcher);
    if (!source.is_ok()) return fail(source.status());
    state->source = std::move(source).value();
  }
  state->matchmaker =
      Matchmaker::create(MatchmakerOptions{options.key, state->self, tensor_shapes(state->tensors),
                                           options.gather_window, options.suspect_for},
                         state->server, state->client, state->backends);
  state->options = std::move(options);
  Status declared =
      state->source->declare(state->self, Deadline::after(state->options.round_timeout));
  if (!declared.is_ok()) {
    state->matchmaker->close();
    return fail(declared.with_context("averaging: declaring " + state->self.endpoint));
  }
  state->thread = std::thread([raw = state.get()] { raw->run(); });
  logger("averaging")
      ->info("averaging '{}' at {} through the {}: {} tensors, {}, backends {}", state->options.key,
             state->self.endpoint, state->source->name(), state->tensors.size(),
             format_bytes(total_bytes(state->tensors)), fmt::join(state->self.backends, ", "));
  return std::unique_ptr<Averager>(new Averager(std::move(state)));
}

void Averager::State::run() {
  for (;;) {
    std::promise<RoundReport> next;
    {
      std::unique_lock lock(mutex);
      wake.wait(lock, [&] { return closed || !queued.empty(); });
      if (closed) break;
      next = std::move(queued.front());
      queued.pop_front();
    }
    next.set_value(round());
  }
  std::deque<std::promise<RoundReport>> left;
  {
    std::lock_guard lock(mutex);
    left.swap(queued);
  }
  for (auto& promise : left)
    promise.set_value(closed_report());
}

RoundReport Averager::State::round() {
  const SteadyTime started = SteadyClock::now();
  const Deadline deadline = Deadline::after(options.round_timeout);
  RoundReport report;
  auto finish = [&](const Status& status) {
    report.ok = status.is_ok();
    if (!status.is_ok()) report.failure = status.to_string();
    matchmaker->end_round();
    report.elapsed = std::chrono::duration_cast<Milliseconds>(SteadyClock::now() - started);
    auto log = logger("averaging");
    log->log(report.ok ? spdlog::level::info : spdlog::level::warn, "averaging '{}': {}",
             options.key, describe(report));
    return report;
  };

  // A failed refresh is not fatal: the declaration of the last round may still be live.
  if (Status declared = source->declare(self, deadline); !declared.is_ok()) {
    logger("averaging")
        ->warn("averaging '{}': refreshing the declaration failed: {}", options.key,
               declared.to_string());
  }
  auto formed = matchmaker->form_group(*source, deadline);
  if (!formed.is_ok()) return finish(formed.status());
  const Group& group = *formed;
  report.round = group.round;
  for (const auto& member : group.members)
    report.members.push_back(member.endpoint);
  report.backend = group.backend;
  if (group.size() == 1) return finish(Status::ok());  // a group of one: the mean is the tensors

  Backend* chosen = backend(group.backend);
  if (chosen == nullptr)
    return finish(internal_error("averaging: the round's backend '" + group.backend +
                                 "' is not one of this member's"));
  // An NCCL round that failed is retried over the transport by every member that saw it fail (the
  // same group, so the same parts), while the deadline leaves time.
  Backend* fallback = backend(kTransportBackend);
  const bool everyone_has_transport =
      std::all_of(group.members.begin(), group.members.end(), [](const MemberInfo& m) {
        return std::find(m.backends.begin(), m.backends.end(), kTransportBackend) !=
               m.backends.end();
      });
  const bool can_fall_back =
      group.backend != kTransportBackend && fallback != nullptr && everyone_has_transport;
  // A stalled NCCL round would otherwise use the whole deadline and leave the retry none: it gets
  // half of what is left, the transport the rest. (Every member computes the same split from its
  // own deadline, so they give up on NCCL at about the same time.)
  const Deadline first_deadline =
      can_fall_back && !deadline.is_never() ? Deadline::after(deadline.remaining() / 2) : deadline;
  Status status = chosen->all_reduce_mean(group, tensors, first_deadline, report);
  if (!status.is_ok() && can_fall_back && !deadline.expired()) {
    report.fallbacks.push_back(group.backend + ": " + status.to_string());
    Group over_transport = group;
    over_transport.backend = kTransportBackend;
    over_transport.backend_setup.clear();
    report.backend = over_transport.backend;
    status = fallback->all_reduce_mean(over_transport, tensors, deadline, report);
  }
  return finish(status);
}

Averager::~Averager() {
  close();
}

RoundReport Averager::step() {
  return step_async().get();
}

std::future<RoundReport> Averager::step_async() {
  std::promise<RoundReport> promise;
  auto future = promise.get_future();
  std::lock_guard lock(state_->mutex);
  if (state_->closed) {
    promise.set_value(closed_report());
  } else {
    state_->queued.push_back(std::move(promise));
    state_->wake.notify_one();
  }
  return future;
}

std::string Averager::endpoint() const {
  return state_->self.endpoint;
}

void Averager::close() {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->closed) return;
    state_->closed = true;
    state_->wake.notify_one();
  }
  state_->matchmaker->close();
  if (state_->thread.joinable()) state_->thread.join();
  state_->release_transport();
}

}  // namespace hivemind::averaging
