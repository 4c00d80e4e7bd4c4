// Authenticator: one endpoint's side of the swarm handshake (hivemind/transport/handshake.h).
//
// Attached to an EndpointBase by the Worker before the endpoint reads a byte. Until the peer has
// proved the key, the endpoint reads no frame larger than kMaxUnauthenticatedFrameBytes (no
// tensors, no payload: admit_header), holds the
// owner's sends (initiator) or has no owner yet (acceptor: the listener's accept callback runs only
// once the proof verified), and every received frame stops here. A deadline timer cuts a peer that
// does not finish in time. I/O thread only.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <hivemind/transport/authentication.h>
#include <hivemind/transport/endpoint.h>
#include <hivemind/transport/handshake.h>
#include <hivemind/transport/listener.h>

#include "auth/auth_gate.h"

namespace hivemind::transport {

class EndpointBase;

class Authenticator {
 public:
  // How long a refused connection stays open after the refusal left, for the peer to read it and
  // close first; it reads nothing meanwhile.
  static constexpr std::chrono::milliseconds kRefusalLinger{1000};

  enum class State { kAwaitHello, kAwaitChallenge, kAwaitProof, kAuthenticated, kRefusing };

  // Dialing side: sends Hello at once. `dialed` is the address the owner asked to connect to.
  static void attach_initiator(const std::shared_ptr<EndpointBase>& endpoint, AuthGate& gate,
                               const AuthOptions& options, std::string dialed);
  // Accepting side. With a key: admits the connection (rate, cap), arms the deadline and calls
  // `on_accept` once the peer proved the key. Without one: calls `on_accept` at once and only
  // answers a keyed peer's Hello with a refusal. Returns the callbacks the listener installs.
  static EndpointCallbacks attach_acceptor(const std::shared_ptr<EndpointBase>& endpoint,
                                           AuthGate& gate, const AuthOptions& options,
                                           std::string listener_address, AcceptCallback on_accept);
  ~Authenticator();

  bool authenticated() const { return state_ == State::kAuthenticated; }
  // Runs synchronously for each complete frame, before it is queued for the owner, so a proof
  // verified here lifts the receive limits before the next frame's header is decoded. False when
  // the frame must not reach the owner (handshake messages; anything before authentication).
  bool admit(ReceivedFrame& frame);
  // Before authentication, for each decoded header: false (after answering it) when the frame is
  // larger than an unauthenticated peer may send.
  bool admit_header(const FrameHeader& header);
  // The endpoint failed: leave the pending list, cancel the deadline.
  void on_endpoint_failed();
  // Once this side refused the peer: why. The endpoint reports it as its error whatever closes the
  // connection first (the peer's reaction to the refusal may arrive before the refusal is sent).
  const Status* refusal() const { return state_ == State::kRefusing ? &refusal_ : nullptr; }

 private:
  Authenticator(EndpointBase& endpoint, AuthGate& gate, const AuthOptions& options, State state);

  void arm_deadline();
  void on_deadline();
  void on_hello(const HandshakeMessage& hello);
  void on_challenge(const HandshakeMessage& challenge);
  void on_proof(const HandshakeMessage& proof);
  void on_refusal(const HandshakeMessage& refusal);
  void on_unauthenticated_frame(const FrameHeader& header);
  void become_authenticated();
  void send_message(const HandshakeMessage& message);
  // Tells the peer why (best effort), then fails the endpoint with `status` once the peer closed
  // or kRefusalLinger after the refusal left, whichever comes first.
  void refuse(RefusalReason reason, const std::string& text, const Status& status);
  // Sends the refusal (or the error reply to a stranger's request) and lingers (see refuse).
  void send_then_linger(OutgoingFrame frame);
  // Logs once per peer host and counts.
  void record_refusal(AuthGate::Counter counter, const Status& status);
  void leave_pending();

  EndpointBase& endpoint_;
  AuthGate& gate_;
  const AuthOptions& options_;
  State state_;
  AcceptCallback on_accept_;                 // acceptor, until authenticated
  AuthGate::PendingList::iterator pending_;  // acceptor, while waiting
  bool in_pending_ = false;
  uint64_t deadline_timer_ = 0;
  HandshakeTranscript transcript_;
  Status refusal_;  // kRefusing: the error the endpoint reports

  friend class AuthGate;
};

}  // namespace hivemind::transport
