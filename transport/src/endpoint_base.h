// What every backend's endpoint shares: the thread hop, the sticky error, exactly-once reporting.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <hivemind/transport/endpoint.h>
#include <hivemind/transport/frame.h>

#include "auth/authenticator.h"
#include "worker_impl.h"

namespace hivemind::transport {

class EndpointBase : public Endpoint, public std::enable_shared_from_this<EndpointBase> {
 public:
  EndpointBase(Worker::Impl& worker, std::string peer) : worker_(worker), peer_(std::move(peer)) {}

  void send(OutgoingFrame frame, SendCallback done) final;
  void close() final;
  Status error() const final;
  std::string peer_address() const final { return peer_; }

  void set_callbacks(EndpointCallbacks callbacks) { callbacks_ = std::move(callbacks); }

  // I/O thread: records the sticky error (first one wins), tears the connection down through
  // on_failed(), and reports on_error once (deferred, so never inside a backend callback).
  void fail(const Status& status);
  bool failed() const { return failed_; }

  // I/O thread: whether the peer may send more than the handshake (it proved the swarm key, or
  // this endpoint needs no proof).
  bool peer_authenticated() const { return !authenticator_ || authenticator_->authenticated(); }
  // I/O thread: backends call it with each decoded header before reading or allocating anything
  // more. False when the frame must not be read: its sender has not authenticated and the frame
  // is larger than a handshake message or a plain request (the authenticator answers and the
  // endpoint fails; the backend stops reading).
  bool admit_header(const FrameHeader& header) {
    return peer_authenticated() || authenticator_->admit_header(header);
  }

 protected:
  // I/O thread only. `done` must be completed exactly once, through complete_send().
  virtual void send_on_loop(OutgoingFrame frame, SendCallback done) = 0;
  // I/O thread: release the connection and fail every pending send with `status`.
  virtual void on_failed(const Status& status) = 0;

  // Completes a send later on the I/O thread (never inline from send()).
  void complete_send(SendCallback& done, Status status);
  // Asks the allocator (or host memory) for the buffers of a frame whose header, method, metadata
  // and tensor descriptors have arrived (its payload has not), and checks the answer.
  Result<std::vector<Buffer>> allocate(const FrameHeader& header, const ReceivedFrame& frame,
                                       std::span<const TensorDescriptor> descriptors);
  // Hands a complete frame to on_frame. A frame read in full before the endpoint failed is still
  // delivered (before on_error): a peer that answers and closes at once must not lose its answer.
  // Once the owner called close(), nothing more is delivered.
  void deliver(ReceivedFrame frame);

  Worker::Impl& worker_;
  std::string peer_;
  EndpointCallbacks callbacks_;
  bool failed_ = false;           // I/O thread
  bool closed_by_owner_ = false;  // I/O thread: close() ran

 private:
  friend class Authenticator;
  // I/O thread: sends now, past the hold on the owner's sends (the handshake's own messages).
  void send_now(OutgoingFrame frame, SendCallback done);
  // I/O thread: sends what the owner queued while the handshake ran, in order.
  void release_held_sends();

  // Null without a swarm key on the dialing side; see auth/authenticator.h.
  std::unique_ptr<Authenticator> authenticator_;
  std::vector<std::pair<OutgoingFrame, SendCallback>> held_sends_;  // I/O thread

  mutable std::mutex error_mu_;
  Status error_;
  // allocate()'s view of the descriptors, kept to reuse their capacity (I/O thread).
  std::vector<uint64_t> incoming_sizes_;
  std::vector<MemoryType> incoming_types_;
};

class ListenerBase : public Listener, public std::enable_shared_from_this<ListenerBase> {
 public:
  explicit ListenerBase(Worker::Impl& worker) : worker_(worker) {}
  void close() final;
  std::string address() const final { return address_; }

 protected:
  virtual void close_on_loop() = 0;
  Worker::Impl& worker_;
  std::string address_;
  bool closed_ = false;
};

}  // namespace hivemind::transport
