// server::Server: hosts experts over the transport's RPC and announces them in the DHT. What the
// hivemind-server program runs; an embedding program (a test, a trainer hosting its own experts)
// may run it in-process.
//
//   info      -> protocol::ExpertInfo of the expert (schemas, max_batch_size)
//   forward   -> the expert's outputs for the request's inputs
//   backward  -> the gradients of the inputs; one optimizer step per backward batch
//
// Data path: the I/O thread validates each request (uid, tensor count, the quant headers against
// the expert's schema, batch size) and queues the still-encoded tensors in the expert's TaskPool
// without copying them; the device's compute thread dequantizes every task of a batch straight into
// the batch tensor (on the GPU for GPU experts), runs it, and encodes each task's outputs, whose
// bytes the Responder hands back to the I/O thread. A malformed request or a NaN (with
// detect_anomalies) fails alone with an error reply.
//
// Lifecycle: create() builds the experts (loading checkpoints), the runtime, the listener and the
// DHT node; start() serves and declares; shutdown() drains: stop accepting (new requests get
// Unavailable), finish what is queued and in flight, stop declaring, checkpoint, close.
// hivemind-server maps SIGTERM/SIGINT to request_shutdown() and SIGUSR1 to request_checkpoint().
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/dht/dht.h>
#include <hivemind/runtime/expert_backend.h>
#include <hivemind/runtime/task_pool.h>
#include <hivemind/server/server_options.h>

namespace hivemind::server {

struct ExpertStats {
  std::string uid;
  runtime::TaskPoolStats forward;
  runtime::TaskPoolStats backward;
};

class Server {
 public:
  struct Impl;

  // Validates the options, builds the experts on their devices (loading <checkpoint_dir>/<uid>.pt
  // when present), places the threads (pinning.h), listens, and joins the DHT. Serves nothing yet.
  static Result<std::unique_ptr<Server>> create(ServerOptions options);
  ~Server();  // shutdown() with the configured grace period, if not done yet

  // Starts the compute threads and the RPC methods, declares the experts once (synchronously), then
  // keeps re-declaring every update_period, checkpointing every checkpoint_interval and printing
  // stats.
  Status start();

  std::string address() const;      // where trainers call, e.g. "tcp://10.0.0.5:41234"
  std::string dht_address() const;  // this server's DHT node ("" without one)
  // This server's DHT node, to look up or store through it in-process; nullptr when the options
  // gave a declare hook instead. Usable until shutdown() stops the I/O thread.
  std::shared_ptr<dht::Dht> dht() const;
  const std::vector<std::string>& expert_uids() const;
  std::shared_ptr<runtime::ExpertBackend> backend(const std::string& uid) const;
  std::string binding() const;  // the CPU placement chosen at start, in words
  std::vector<ExpertStats> stats() const;
  // "http://127.0.0.1:9100/metrics" when --metrics-port is set, "" otherwise.
  std::string metrics_address() const;
  // What a scrape returns now (Prometheus text), with or without the HTTP endpoint; also after
  // shutdown() (the DHT family then reads 0), but not concurrently with it.
  std::string metrics_text() const;

  // Thread-safe requests, acted on by the server's maintenance thread (hivemind-server's signal
  // thread calls them).
  void request_checkpoint();
  void request_shutdown();
  // Blocks until request_shutdown() (or shutdown()) and returns the drain's outcome.
  Status wait();

  // Checkpoints every expert now (atomic per-expert files). Ok without a checkpoint_dir.
  Status checkpoint_all();
  // Drains and stops within `grace`. Idempotent; the first call's outcome is returned by later
  // ones.
  Status shutdown(Milliseconds grace);

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hivemind::server
