#include <algorithm>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include <fmt/format.h>

#include <hivemind/averaging/matchmaker.h>
#include <hivemind/common/logging.h>

namespace hivemind::averaging {

namespace {

using transport::Message;
using transport::rpc::Responder;

struct PendingJoin {
  MemberInfo member;
  uint64_t last_round = 0;
  Responder responder;
  SteadyTime expires;
};

// What joins to this member get.
enum class Phase {
  kQueueing,   // between rounds, or waiting for its own leader: joins wait for the next gather
  kGathering,  // leading, collecting this round's joins
  kInRound,    // in a formed round (leading or following): joins of the round's members are
               // queued for the next round (they finished first), others' refused as late
};

void refuse(Responder& responder, JoinRefusal::Reason reason, std::string message) {
  auto bytes = encode_join_refusal(JoinRefusal{reason, std::move(message)});
  responder.reply(Message{std::move(bytes), {}});
}

// An rpc failure that means nobody is serving at the leader's address: another leader may lead.
bool leader_is_gone(const Status& status) {
  switch (status.code()) {
    case StatusCode::kPeerClosed:
    case StatusCode::kIoError:
    case StatusCode::kUnavailable:
    case StatusCode::kNotFound:  // alive, but not averaging this key any more
      return true;
    default:
      return false;
  }
}

// How long a leader's gather waits before probing the candidates that have not joined.
constexpr Milliseconds kProbeGrace{200};

// A probe's failure that means nobody averages this key at that address any more (a refused
// connection is kUnavailable; the probe is too small to meet the client's queue limit).
bool candidate_is_gone(const Status& status) {
  switch (status.code()) {
    case StatusCode::kPeerClosed:
    case StatusCode::kIoError:
    case StatusCode::kUnavailable:
    case StatusCode::kNotFound:
      return true;
    default:
      return false;
  }
}

}  // namespace

struct Matchmaker::State : std::enable_shared_from_this<Matchmaker::State> {
  MatchmakerOptions options;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;
  std::vector<std::shared_ptr<Backend>> backends;

  mutable std::mutex mutex;
  std::condition_variable changed;
  bool closed = false;
  Phase phase = Phase::kQueueing;
  std::string round_leader;             // while kInRound
  std::set<std::string> round_members;  // while kInRound
  uint64_t round = 0;                   // the last round this member took part in (any leader's)
  std::map<std::string, PendingJoin> joins;
  std::map<std::string, SteadyTime> suspected;  // endpoint -> until
  // This member passes itself over as the DHT leader until then: its last gather found none of
  // the other live candidates, so they follow someone else (they suspect it; a stalled leader that
  // resumed must not average alone while the others average without it).
  SteadyTime shunned_until{};
  std::set<std::string> known;  // every endpoint that ever joined us
  std::optional<transport::rpc::CallId> join_call;
  std::string following;      // the leader this member's join_call waits on
  bool lead_instead = false;  // join_call was canceled because `following` follows this member

  struct FollowOutcome {
    bool answered = false;      // the leader is alive and replied (a group or a refusal)
    bool lead_instead = false;  // the leader follows this member: this member leads the round
  };

  void handle_join(Message request, Responder responder);
  // Asks `endpoint` (a candidate that has not joined) whether it still averages this key, by
  // `deadline`; one that is gone (refused connection, or no averager of the key) is suspected at
  // once, which ends a gather that waited only for it. Not under `mutex`.
  void probe(const std::string& endpoint, Deadline deadline);
  Result<Group> lead(const Candidates& candidates, Deadline deadline);
  Result<Group> follow(const std::string& leader, Deadline deadline, FollowOutcome& outcome);
  // Two members that each picked the other (one of them passed itself over, see shunned_until)
  // would wait on each other until both gave up and averaged alone. The smaller endpoint of such a
  // pair leads: it sees the other's join queued here, either before it sends its own or while its
  // own waits. The larger always keeps following, so exactly one of the two leads. Under `mutex`.
  bool is_followed_by_own_leader(const std::string& leader) const {
    return options.self.endpoint < leader && joins.contains(leader) &&
           joins.at(leader).expires > SteadyClock::now();
  }
  std::string pick_leader(const Candidates& candidates);
  bool is_suspected(const std::string& endpoint, SteadyTime now) const {
    auto it = suspected.find(endpoint);
    return it != suspected.end() && it->second > now;
  }
  void suspect(const std::string& endpoint) {
    suspected[endpoint] = SteadyClock::now() + options.suspect_for;
  }
  // Drops joins whose joiner stopped waiting. Under `mutex`; returns the responders to refuse.
  std::vector<PendingJoin> prune_expired_joins(SteadyTime now) {
    std::vector<PendingJoin> expired;
    for (auto it = joins.begin(); it != joins.end();) {
      if (it->second.expires <= now) {
        expired.push_back(std::move(it->second));
        it = joins.erase(it);
      } else {
        ++it;
      }
    }
    return expired;
  }
};

void Matchmaker::State::handle_join(Message request, Responder responder) {
  auto decoded = decode_join_request(request.metadata);
  if (!decoded.is_ok()) {
    responder.reply(decoded.status());
    return;
  }
  JoinRequest join = std::move(decoded).value();
  if (join.key != options.key) {
    refuse(responder, JoinRefusal::Reason::kMismatch,
           fmt::format("key '{}' is not this leader's '{}'", join.key, options.key));
    return;
  }
  if (auto mismatch = describe_shape_mismatch(join.tensors, options.shapes); !mismatch.empty()) {
    refuse(responder, JoinRefusal::Reason::kMismatch, mismatch);
    return;
  }
  std::vector<PendingJoin> dropped;
  std::optional<std::string> refusal;
  JoinRefusal::Reason reason = JoinRefusal::Reason::kLate;
  {
    std::lock_guard lock(mutex);
    const SteadyTime now = SteadyClock::now();
    if (closed) {
      reason = JoinRefusal::Reason::kClosed;
      refusal = "the averager at " + options.self.endpoint + " is closing";
    } else if (phase == Phase::kInRound && !round_members.contains(join.member.endpoint)) {
      if (round_leader == options.self.endpoint) {
        refusal = fmt::format("joined late: round {} led by {} was already formed; next round",
                              round, round_leader);
      } else {
        reason = JoinRefusal::Reason::kNotLeader;
        refusal = fmt::format("{} is in round {} led by {}; next round", options.self.endpoint,
                              round, round_leader);
      }
    } else {
      dropped = prune_expired_joins(now);
      const std::string endpoint = join.member.endpoint;
      if (auto it = joins.find(endpoint); it != joins.end()) {
        dropped.push_back(std::move(it->second));
        joins.erase(it);
      }
      suspected.erase(endpoint);
      known.insert(endpoint);
      joins.emplace(endpoint, PendingJoin{std::move(join.member), join.last_round,
                                          std::move(responder), now + join.wait});
      if (join_call && !lead_instead && endpoint == following &&
          is_followed_by_own_leader(following)) {
        lead_instead = true;
        client->cancel(*join_call);
      }
      changed.notify_all();
    }
  }
  if (refusal) refuse(responder, reason, *refusal);
  for (auto& old : dropped)
    refuse(old.responder, JoinRefusal::Reason::kSuperseded,
           "this join expired or was superseded by a newer one of the same member");
}

void Matchmaker::State::probe(const std::string& endpoint, Deadline deadline) {
  client->call(endpoint, alive_method(options.key), Message{}, deadline,
               [weak = weak_from_this(), endpoint](const Result<Message>& reply) {
                 if (reply.is_ok() || !candidate_is_gone(reply.status())) return;
                 auto state = weak.lock();
                 if (!state) return;
                 std::lock_guard lock(state->mutex);
                 if (state->joins.contains(endpoint)) return;  // it joined meanwhile: alive
                 state->suspect(endpoint);
                 logger("averaging")
                     ->info("averaging '{}': candidate {} is gone ({}); not waiting for it",
                            state->options.key, endpoint, reply.status().to_string());
                 state->changed.notify_all();
               });
}

std::string Matchmaker::State::pick_leader(const Candidates& candidates) {
  if (candidates.leader) return *candidates.leader;
  const SteadyTime now = SteadyClock::now();
  std::lock_guard lock(mutex);
  const std::string& self = options.self.endpoint;
  std::optional<std::string> best;
  if (shunned_until <= now) best = self;
  for (const auto& endpoint : candidates.endpoints) {
    if (endpoint != self && !is_suspected(endpoint, now) && (!best || endpoint < *best))
      best = endpoint;
  }
  return best.value_or(self);  // shunned, but nobody else is left: lead
}

Result<Group> Matchmaker::State::lead(const Candidates& candidates, Deadline deadline) {
  const std::string& self = options.self.endpoint;
  const SteadyTime gather_end = std::min(deadline.at(), SteadyClock::now() + options.gather_window);
  std::vector<PendingJoin> taken;
  std::vector<PendingJoin> expired;
  Group group;
  {
    std::unique_lock lock(mutex);
    phase = Phase::kGathering;
    size_t others = 0;  // live candidates besides this member when the gather starts
    for (const auto& endpoint : candidates.endpoints)
      others += endpoint != self && !is_suspected(endpoint, SteadyClock::now()) ? 1 : 0;
    // Complete: every candidate not suspected joined, and (launcher) as many joined as the
    // membership counts, less the members known and suspected.
    auto complete = [&] {
      const SteadyTime now = SteadyClock::now();
      for (const auto& endpoint : candidates.endpoints) {
        if (endpoint != self && !is_suspected(endpoint, now) && !joins.contains(endpoint))
          return false;
      }
      std::set<std::string> counted(known.begin(), known.end());
      counted.insert(candidates.endpoints.begin(), candidates.endpoints.end());
      size_t suspected_known = 0;
      for (const auto& endpoint : counted)
        suspected_known += endpoint != self && is_suspected(endpoint, now) ? 1 : 0;
      const size_t needed =
          candidates.expected > 1 + suspected_known ? candidates.expected - 1 - suspected_known : 0;
      return joins.size() >= needed;
    };
    // A candidate killed since it declared itself stays in the DHT until its declaration expires,
    // and would cost the whole gather window. Those that have not joined after a short grace (the
    // others usually join within it) are probed; a stopped process accepts the connection and
    // never answers, so it is still waited for until the window ends.
    const SteadyTime probe_at = std::min(
        gather_end, SteadyClock::now() + std::min(options.gather_window / 10, kProbeGrace));
    if (!changed.wait_until(lock, probe_at, [&] { return closed || complete(); })) {
      std::vector<std::string> missing;
      const SteadyTime now = SteadyClock::now();
      for (const auto& endpoint : candidates.endpoints) {
        if (endpoint != self && !is_suspected(endpoint, now) && !joins.contains(endpoint))
          missing.push_back(endpoint);
      }
      // Unlocked: a call whose I/O thread is gone completes on this thread, and its callback
      // takes the lock.
      lock.unlock();
      for (const auto& endpoint : missing)
        probe(endpoint, Deadline(gather_end));
      lock.lock();
    }
    changed.wait_until(lock, gather_end, [&] { return closed || complete(); });
    if (closed) {
      phase = Phase::kQueueing;
      return canceled_error("averaging: the averager was closed while gathering a round");
    }
    expired = prune_expired_joins(SteadyClock::now());
    for (auto& [endpoint, join] : joins)
      taken.push_back(std::move(join));
    joins.clear();
    // Candidates that did not join are not waited for next time (a join clears the suspicion).
    std::set<std::string> joined;
    for (const auto& join : taken)
      joined.insert(join.member.endpoint);
    if (taken.empty() && others > 0 && !candidates.leader) {
      // Nobody came although others are alive: they follow another leader (they suspect this one).
      // Follow them from the next round instead of suspecting all of them.
      shunned_until = SteadyClock::now() + options.suspect_for;
    } else {
      if (!taken.empty()) shunned_until = {};  // others follow this member again
      std::set<std::string> expected(candidates.endpoints.begin(), candidates.endpoints.end());
      expected.insert(known.begin(), known.end());
      for (const auto& endpoint : expected) {
        if (endpoint != self && !joined.contains(endpoint)) suspect(endpoint);
      }
    }
    // Above every member's last round: a member's backend never sees a round number twice.
    for (const auto& join : taken)
      round = std::max(round, join.last_round);
    round += 1;
    phase = Phase::kInRound;
    round_leader = self;
    round_members = joined;
    group.round = round;
  }
  for (auto& old : expired)
    refuse(old.responder, JoinRefusal::Reason::kLate, "the join expired before the round formed");

  std::sort(taken.begin(), taken.end(), [](const PendingJoin& a, const PendingJoin& b) {
    return a.member.endpoint < b.member.endpoint;
  });
  group.key = options.key;
  group.members.push_back(options.self);
  for (const auto& join : taken)
    group.members.push_back(join.member);

  auto fail_all = [&](const Status& status) {
    for (auto& join : taken)
      refuse(join.responder, JoinRefusal::Reason::kMismatch, status.message());
    return status;
  };
  auto backend_name = choose_backend(group.members);
  if (!backend_name.is_ok()) return fail_all(backend_name.status());
  group.backend = *backend_name;
  auto backend = std::find_if(backends.begin(), backends.end(),
                              [&](const auto& b) { return b->name() == group.backend; });
  if (backend == backends.end()) {
    return fail_all(internal_error("averaging: the leader listed backend '" + group.backend +
                                   "' but has no such backend"));
  }
  auto setup = (*backend)->leader_setup(group);
  if (!setup.is_ok()) return fail_all(setup.status().with_context("averaging: leader setup"));
  group.backend_setup = std::move(setup).value();
  for (size_t i = 0; i < taken.size(); ++i) {
    group.self = i + 1;
    taken[i].responder.reply(Message{encode_group(group), {}});
  }
  group.self = 0;
  return group;
}

Result<Group> Matchmaker::State::follow(const std::string& leader, Deadline deadline,
                                        FollowOutcome& outcome) {
  outcome = FollowOutcome{};
  const std::string& self = options.self.endpoint;
  auto reply = std::make_shared<std::promise<Result<Message>>>();
  auto future = reply->get_future();
  {
    std::lock_guard lock(mutex);
    if (closed) return canceled_error("averaging: the averager is closed");
    if (is_followed_by_own_leader(leader)) {
      outcome.lead_instead = true;
      return unavailable_error("averaging: " + leader + " follows this member");
    }
    following = leader;
    lead_instead = false;
    JoinRequest join{options.key, options.self, options.shapes, round, deadline.remaining()};
    join_call = client->call(
        leader, join_method(options.key), Message{encode_join_request(join), {}}, deadline,
        [reply](Result<Message> result) { reply->set_value(std::move(result)); });
  }
  // The call completes exactly once: with the reply, at the deadline, or canceled by close().
  Result<Message> result = future.get();
  std::vector<PendingJoin> misdirected;
  {
    std::lock_guard lock(mutex);
    join_call.reset();
    following.clear();
    // A group that arrived before the cancel took effect still stands; only a canceled call leads.
    if (std::exchange(lead_instead, false) && !result.is_ok() &&
        result.status().code() == StatusCode::kCanceled && !closed) {
      outcome.lead_instead = true;
      return unavailable_error("averaging: " + leader + " follows this member");
    }
    if (!result.is_ok())
      return result.status().with_context("averaging: joining the round of leader " + leader);
    auto decoded = decode_join_reply(result->metadata);
    if (!decoded.is_ok())
      return decoded.status().with_context("averaging: the reply of leader " + leader);
    if (auto* refusal = std::get_if<JoinRefusal>(&*decoded)) {
      // A leader that is closing is as good as gone: the next candidate may lead.
      outcome.answered = refusal->reason != JoinRefusal::Reason::kClosed;
      switch (refusal->reason) {
        case JoinRefusal::Reason::kMismatch:
          return invalid_argument_error("averaging: leader " + leader +
                                        " refused this member: " + refusal->message);
        case JoinRefusal::Reason::kClosed:
          return peer_closed_error("averaging: leader " + leader + ": " + refusal->message);
        default:
          return unavailable_error("averaging: leader " + leader + ": " + refusal->message);
      }
    }
    outcome.answered = true;
    Group group = std::get<Group>(std::move(*decoded));
    if (group.key != options.key || group.members[group.self].endpoint != self ||
        group.members.front().endpoint != leader) {
      return protocol_error(fmt::format(
          "averaging: leader {} sent a group that is not this member's (key '{}', self {})", leader,
          group.key, group.members[group.self].endpoint));
    }
    round = std::max(round, group.round);
    phase = Phase::kInRound;
    round_leader = leader;
    round_members.clear();
    for (const auto& member : group.members)
      round_members.insert(member.endpoint);
    // Members that took this member for the leader: they will not get a group from it.
    for (auto& [endpoint, join] : joins)
      misdirected.push_back(std::move(join));
    joins.clear();
    for (auto& join : misdirected) {
      refuse(join.responder, JoinRefusal::Reason::kNotLeader,
             fmt::format("{} follows {} in round {}; next round", self, leader, group.round));
    }
    return group;
  }
}

std::shared_ptr<Matchmaker> Matchmaker::create(MatchmakerOptions options,
                                               std::shared_ptr<transport::rpc::Server> server,
                                               std::shared_ptr<transport::rpc::Client> client,
                                               std::vector<std::shared_ptr<Backend>> backends) {
  auto state = std::make_shared<State>();
  state->options = std::move(options);
  state->server = std::move(server);
  state->client = std::move(client);
  state->backends = std::move(backends);
  std::weak_ptr<State> weak = state;
  state->server->handle(alive_method(state->options.key), [weak](const Message&,
                                                                 Responder responder) {
    auto self = weak.lock();
    bool open = false;
    if (self) {
      std::lock_guard lock(self->mutex);
      open = !self->closed;
    }
    responder.reply(open ? Result<Message>(Message{})
                         : Result<Message>(not_found_error("no open averager of this key here")));
  });
  state->server->handle(
      join_method(state->options.key), [weak](Message request, Responder responder) {
        if (auto self = weak.lock()) {
          self->handle_join(std::move(request), std::move(responder));
        } else {
          refuse(responder, JoinRefusal::Reason::kClosed, "the averager was closed");
        }
      });
  return std::shared_ptr<Matchmaker>(new Matchmaker(std::move(state)));
}

Matchmaker::~Matchmaker() {
  close();
}

Result<Group> Matchmaker::form_group(GroupSource& source, Deadline deadline) {
  HIVEMIND_ASSIGN_OR_RETURN(Candidates candidates,
                            source.candidates(state_->options.self, deadline));
  for (;;) {
    {
      std::lock_guard lock(state_->mutex);
      if (state_->closed) return canceled_error("averaging: the averager is closed");
    }
    const std::string leader = state_->pick_leader(candidates);
    if (leader == state_->options.self.endpoint) return state_->lead(candidates, deadline);
    // A DHT leader that does not form its round within two gather windows is taken for stalled,
    // and the next candidate leads while this round's deadline leaves time; a launcher's fixed
    // leader is waited for until the deadline.
    const Deadline patience =
        candidates.leader ? deadline
                          : std::min(deadline, Deadline::after(2 * state_->options.gather_window));
    State::FollowOutcome outcome;
    auto group = state_->follow(leader, patience, outcome);
    if (group.is_ok()) return group;
    if (outcome.lead_instead) return state_->lead(candidates, deadline);
    const Status& failure = group.status();
    // A refusal from a live leader (late, mismatch) says nothing against it.
    if (outcome.answered || failure.code() == StatusCode::kCanceled) return failure;
    if (failure.code() == StatusCode::kTimeout || leader_is_gone(failure)) {
      std::lock_guard lock(state_->mutex);
      state_->suspect(leader);
    }
    logger("averaging")
        ->info("averaging '{}': leader {} failed ({}); suspected for {} ms", state_->options.key,
               leader, failure.to_string(), state_->options.suspect_for.count());
    // Another leader may lead this round when this one failed at once and time is left; a fixed
    // (launcher) leader has no replacement.
    const bool retry = leader_is_gone(failure) || failure.code() == StatusCode::kTimeout;
    if (candidates.leader || !retry || deadline.expired()) return failure;
  }
}

void Matchmaker::end_round() {
  std::lock_guard lock(state_->mutex);
  state_->phase = Phase::kQueueing;
  state_->round_leader.clear();
  state_->round_members.clear();
}

std::vector<std::string> Matchmaker::suspects() const {
  std::lock_guard lock(state_->mutex);
  std::vector<std::string> result;
  const SteadyTime now = SteadyClock::now();
  for (const auto& [endpoint, until] : state_->suspected) {
    if (until > now) result.push_back(endpoint);
  }
  return result;
}

void Matchmaker::close() {
  std::vector<PendingJoin> waiting;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->closed) return;
    state_->closed = true;
    for (auto& [endpoint, join] : state_->joins)
      waiting.push_back(std::move(join));
    state_->joins.clear();
    if (state_->join_call) state_->client->cancel(*state_->join_call);
    state_->changed.notify_all();
  }
  for (auto& join : waiting)
    refuse(join.responder, JoinRefusal::Reason::kClosed, "the averager is closing");
}

Result<std::string> choose_backend(std::span<const MemberInfo> members) {
  if (members.empty()) return invalid_argument_error("averaging: a group without members");
  for (const auto& name : members.front().backends) {
    bool everyone = std::all_of(members.begin(), members.end(), [&](const MemberInfo& m) {
      return std::find(m.backends.begin(), m.backends.end(), name) != m.backends.end();
    });
    if (!everyone) continue;
    if (name == "nccl") {
      std::set<std::string_view> devices;
      bool distinct = true;
      for (const auto& m : members)
        distinct = distinct && !m.device_id.empty() && devices.insert(m.device_id).second;
      if (!distinct) continue;
    }
    return name;
  }
  return unsupported_error(
      fmt::format("averaging: no backend every one of the {} members can run (the leader lists {})",
                  members.size(), fmt::join(members.front().backends, ", ")));
}

}  // namespace hivemind::averaging
