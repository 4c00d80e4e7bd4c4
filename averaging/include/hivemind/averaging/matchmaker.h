// Matchmaker: the join protocol that turns one round's candidates into a Group.
//
// Per round, every member computes the same leader from the same candidates: the launcher's rank 0,
// or the smallest endpoint among the DHT candidates this member does not suspect. The leader
// collects joins (rpc method join_method(key)) until every candidate joined or the gather window
// ends, orders the members (itself first, then by endpoint), picks the backend and runs its
// leader_setup, and replies the Group to every joiner. Everything else is a follower: it calls the
// leader's join method and waits for the Group until the round's deadline.
//
// Failures: a join that reaches the leader after it formed the round is refused "joined late" (the
// joiner takes part in the next round) — unless the joiner is a member of that round that finished
// it first, whose join waits for the next round. A DHT leader that refuses connections (a dead
// process) or has not formed its round within two gather windows (a stopped one) is suspected for
// `suspect_for` and the next candidate leads, in the same round while its deadline leaves time; a
// launcher's fixed leader has no replacement. Candidates still missing from a gather after a short
// grace are probed (alive_method(key)); one that is gone (connection refused, averager closed) is
// suspected at once instead of waited for. A leader suspects the candidates that did not join,
// so the next round does not wait for them (a join clears that); a leader that no other live
// candidate joined passes itself over for `suspect_for` (the others follow someone else: it follows
// them too) until a round it leads is joined again. Because passing over is this member's own
// knowledge, two members can pick each other (the leader they shared died): the smaller endpoint of
// such a pair leads as soon as it holds the other's join, and the larger keeps following.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include <hivemind/averaging/backend.h>
#include <hivemind/averaging/group.h>
#include <hivemind/averaging/group_source.h>
#include <hivemind/averaging/group_wire.h>
#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>

namespace hivemind::averaging {

struct MatchmakerOptions {
  std::string key;
  MemberInfo self;                  // this member as it joins (endpoint = the rpc server's)
  std::vector<TensorShape> shapes;  // what it averages; joiners must bring the same
  Milliseconds gather_window{2000};
  Milliseconds suspect_for{60000};
};

class Matchmaker {
 public:
  struct State;

  // Serves join_method(options.key) on `server` (replacing an earlier handler of that key) and
  // calls leaders through `client`. `backends` is this member's preference list; a leader picks the
  // round's backend from it and runs that backend's leader_setup.
  static std::shared_ptr<Matchmaker> create(MatchmakerOptions options,
                                            std::shared_ptr<transport::rpc::Server> server,
                                            std::shared_ptr<transport::rpc::Client> client,
                                            std::vector<std::shared_ptr<Backend>> backends);
  ~Matchmaker();  // close()

  // One attempt to form this round's group, by `deadline`. Errors: kUnavailable "joined late" (the
  // leader formed the round before this join arrived), kTimeout, kPeerClosed (no leader could be
  // reached), kInvalidArgument (tensors that do not match the leader's), kCanceled (closed).
  // Between form_group and end_round joins to this member are refused as late.
  Result<Group> form_group(GroupSource& source, Deadline deadline);
  // The round this member took part in is over: joins are queued for the next round again.
  void end_round();

  // Endpoints this member suspects now (diagnostics, tests).
  std::vector<std::string> suspects() const;

  // Refuses every waiting join, cancels this member's own join call and makes form_group return
  // kCanceled. Idempotent; thread-safe.
  void close();

 private:
  explicit Matchmaker(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

// The backend of a round: the first of the leader's list that every member lists ("nccl" also needs
// a distinct, non-empty device_id per member). Error when no backend fits every member.
Result<std::string> choose_backend(std::span<const MemberInfo> members);

}  // namespace hivemind::averaging
