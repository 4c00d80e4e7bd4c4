// Averager: keeps one process's copy of some tensors in step with the other members averaging the
// same key, one round at a time.
//
// A round (one step()) declares this member, forms a group with the members that are there
// (matchmaker.h: through the DHT or the launcher's membership), and replaces every tensor by the
// group's mean with the backend the leader picked; an NCCL round that fails is retried over the
// transport while the deadline allows. A round that fails for any reason (a member died or stalled,
// this member joined late, the leader is gone) leaves the tensors exactly as they were and returns
// ok=false with the reason; the next round forms without the member that failed. step() returns by
// round_timeout whatever the others do.
#pragma once

#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <hivemind/averaging/backend.h>
#include <hivemind/averaging/launcher_group_source.h>
#include <hivemind/averaging/round_report.h>
#include <hivemind/averaging/tensor_ref.h>
#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/dht/dht.h>
#include <hivemind/quant/types.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

namespace hivemind::averaging {

struct AveragerOptions {
  std::string key;  // required, e.g. "run42.dense"; at most 80 bytes (the DHT's key limit)
  // Membership: through the DHT, or else from the launcher (exactly one of the two).
  dht::Dht* dht = nullptr;
  std::optional<LauncherGroupOptions> launcher;
  // Where the averaging rpc methods are served ("ucx://..." too); ignored when `server` is given.
  std::string listen = "tcp://127.0.0.1:0";
  // Share an existing transport instead of creating one.
  std::shared_ptr<transport::Worker> worker;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;
  // step() returns by then, whatever happens.
  Milliseconds round_timeout{30000};
  // How long a leader waits for the candidates to join before it starts the round without the
  // missing ones. Must be shorter than round_timeout (the round needs time after it).
  Milliseconds gather_window{3000};
  // How long a DHT declaration lives; refreshed every round. A member that stops stepping drops
  // out of the candidates this long after its last round.
  Milliseconds declaration_ttl{60000};
  // How long a leader that could not be reached, or a candidate that did not join, is passed over.
  Milliseconds suspect_for{60000};
  // Transport parts on the wire (kBlockAbsmaxU8); none by default.
  std::optional<quant::Scheme> compression;
  // Preference order; empty: default_backends().
  std::vector<std::shared_ptr<Backend>> backends;
};

// "round 7 ok: 3 members, transport, 12.0 MiB sent, 12.0 MiB received, 41 ms" (or "failed: why").
std::string describe(const RoundReport& report);

class Averager {
 public:
  struct State;

  // Checks the tensors (check_round_tensors) and the options, starts serving the join method and
  // declares this member. Every error names what is wrong. The tensors' memory must outlive the
  // averager: after a failed round the transport may still read it until close().
  static Result<std::unique_ptr<Averager>> create(std::vector<TensorRef> tensors,
                                                  AveragerOptions options);
  ~Averager();  // close()
  Averager(const Averager&) = delete;
  Averager& operator=(const Averager&) = delete;

  // One round now; blocks until its result (at most round_timeout after it starts).
  RoundReport step();
  // The same on the averager's thread; rounds run one at a time, in the order asked. The tensors
  // must not be written until the future is ready.
  std::future<RoundReport> step_async();
  // Where this member's averaging rpc methods are served.
  std::string endpoint() const;
  // Idempotent; steps not started complete with ok=false ("averager closed"), a running one ends
  // early (matchmaking is canceled; a backend returns by its deadline).
  void close();

 private:
  explicit Averager(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace hivemind::averaging
