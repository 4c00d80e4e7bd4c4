#include "auth/authenticator.h"

#include <fmt/format.h>

#include <hivemind/common/logging.h>

#include "endpoint_base.h"

namespace hivemind::transport {
namespace {

constexpr std::string_view kKeyHint =
    "every member needs the same key (--swarm_key_file / HIVEMIND_SWARM_KEY_FILE)";

bool is_handshake_frame(const ReceivedFrame& frame) {
  return frame.header.kind == FrameKind::kMessage && frame.method == kHandshakeMethod;
}

std::string_view frame_kind_name(FrameKind kind) {
  switch (kind) {
    case FrameKind::kMessage:
      return "message";
    case FrameKind::kRequest:
      return "request";
    case FrameKind::kResponse:
      return "response";
    case FrameKind::kError:
      return "error reply";
    case FrameKind::kCancel:
      return "cancel";
  }
  return "unknown";
}

}  // namespace

Authenticator::Authenticator(EndpointBase& endpoint, AuthGate& gate, const AuthOptions& options,
                             State state)
    : endpoint_(endpoint), gate_(gate), options_(options), state_(state) {}

Authenticator::~Authenticator() {
  leave_pending();
}

void Authenticator::attach_initiator(const std::shared_ptr<EndpointBase>& endpoint, AuthGate& gate,
                                     const AuthOptions& options, std::string dialed) {
  std::unique_ptr<Authenticator> auth(
      new Authenticator(*endpoint, gate, options, State::kAwaitChallenge));
  Authenticator& self = *auth;
  endpoint->authenticator_ = std::move(auth);
  self.transcript_.dialed_address = std::move(dialed);
  auto nonce = fresh_nonce();
  if (!nonce.is_ok()) {
    endpoint->fail(nonce.status());
    return;
  }
  self.transcript_.initiator_nonce = *nonce;
  self.arm_deadline();
  HandshakeMessage hello;
  hello.type = HandshakeType::kHello;
  hello.nonce = self.transcript_.initiator_nonce;
  hello.address = self.transcript_.dialed_address;
  self.send_message(hello);
}

EndpointCallbacks Authenticator::attach_acceptor(const std::shared_ptr<EndpointBase>& endpoint,
                                                 AuthGate& gate, const AuthOptions& options,
                                                 std::string listener_address,
                                                 AcceptCallback on_accept) {
  if (!options.swarm_key) {
    // Open listener: the owner gets the endpoint now; only a keyed peer's Hello is intercepted.
    endpoint->authenticator_.reset(
        new Authenticator(*endpoint, gate, options, State::kAuthenticated));
    return on_accept(endpoint);
  }
  std::unique_ptr<Authenticator> auth(
      new Authenticator(*endpoint, gate, options, State::kAwaitHello));
  Authenticator& self = *auth;
  endpoint->authenticator_ = std::move(auth);
  self.transcript_.listener_address = std::move(listener_address);
  self.on_accept_ = std::move(on_accept);
  self.arm_deadline();
  const std::string host = source_host(endpoint->peer_address());
  if (!gate.take_source_token(host, options, SteadyClock::now())) {
    self.record_refusal(AuthGate::Counter::kRateLimited,
                        unavailable_error(fmt::format(
                            "refused {}: more than {} new connections per second from {}",
                            endpoint->peer_address(), options.source_rate_per_second, host)));
    // Deferred: the listener starts the endpoint after this returns.
    endpoint->worker_.defer([weak = std::weak_ptr<EndpointBase>(endpoint)] {
      auto ep = weak.lock();
      if (!ep || ep->failed() || !ep->authenticator_) return;
      ep->authenticator_->refuse(RefusalReason::kBusy, "too many new connections from your host",
                                 unavailable_error("refused: source rate limit"));
    });
    return {};
  }
  std::shared_ptr<EndpointBase> evicted = gate.add_pending(endpoint, options, self.pending_);
  self.in_pending_ = true;
  if (evicted && evicted->authenticator_) {
    Authenticator& old = *evicted->authenticator_;
    old.in_pending_ = false;
    old.record_refusal(
        AuthGate::Counter::kEvicted,
        unavailable_error(fmt::format("cut {}: more than {} connections waiting to authenticate",
                                      evicted->peer_address(), options.max_pending)));
    evicted->fail(unavailable_error("cut: too many connections waiting to authenticate"));
  }
  return {};  // no owner until the peer has proved the key
}

void Authenticator::arm_deadline() {
  std::weak_ptr<EndpointBase> weak = endpoint_.weak_from_this();
  deadline_timer_ =
      endpoint_.worker_.add_timer_on_loop(SteadyClock::now() + options_.handshake_timeout, [weak] {
        auto ep = weak.lock();
        if (ep && ep->authenticator_) {
          ep->authenticator_->deadline_timer_ = 0;
          ep->authenticator_->on_deadline();
        }
      });
}

void Authenticator::on_deadline() {
  if (state_ == State::kAuthenticated || endpoint_.failed()) return;
  Status status = timeout_error(
      fmt::format("peer did not authenticate: {} did not complete the swarm handshake within {} ms",
                  endpoint_.peer_address(), options_.handshake_timeout.count()));
  if (state_ != State::kRefusing) record_refusal(AuthGate::Counter::kTimedOut, status);
  endpoint_.fail(status);
}

bool Authenticator::admit(ReceivedFrame& frame) {
  if (state_ == State::kAuthenticated && frame.header.kind != FrameKind::kMessage) return true;
  if (state_ == State::kRefusing) return false;
  if (!is_handshake_frame(frame)) {
    if (state_ == State::kAuthenticated) return true;
    on_unauthenticated_frame(frame.header);
    return false;
  }
  auto message = decode_handshake(frame.message.metadata);
  if (!message.is_ok()) {
    Status status = message.status().with_context(fmt::format(
        "peer did not authenticate: malformed handshake from {}", endpoint_.peer_address()));
    record_refusal(AuthGate::Counter::kProtocolErrors, status);
    refuse(RefusalReason::kProtocol, "malformed handshake message", status);
    return false;
  }
  if (message->type == HandshakeType::kRefusal) {
    on_refusal(*message);
    return false;
  }
  if (state_ == State::kAuthenticated && options_.swarm_key == nullptr &&
      message->type == HandshakeType::kHello) {
    // A keyed peer dialed this open listener. Refusing tells it at once; waiting would leave it to
    // its deadline.
    Status status =
        unavailable_error(fmt::format("peer did not authenticate: {} offered a swarm key "
                                      "handshake, but this process has no swarm "
                                      "key ({})",
                                      endpoint_.peer_address(), kKeyHint));
    record_refusal(AuthGate::Counter::kUnauthenticated, status);
    refuse(RefusalReason::kNoKey, "this peer has no swarm key and accepts anyone", status);
    return false;
  }
  const HandshakeType expected = state_ == State::kAwaitHello       ? HandshakeType::kHello
                                 : state_ == State::kAwaitChallenge ? HandshakeType::kChallenge
                                 : state_ == State::kAwaitProof     ? HandshakeType::kProof
                                                                    : HandshakeType::kRefusal;
  if (message->type != expected) {
    Status status = protocol_error(
        fmt::format("peer did not authenticate: {} sent handshake message {} out of order",
                    endpoint_.peer_address(), static_cast<int>(message->type)));
    record_refusal(AuthGate::Counter::kProtocolErrors, status);
    refuse(RefusalReason::kProtocol, "handshake message out of order", status);
    return false;
  }
  switch (message->type) {
    case HandshakeType::kHello:
      on_hello(*message);
      break;
    case HandshakeType::kChallenge:
      on_challenge(*message);
      break;
    case HandshakeType::kProof:
      on_proof(*message);
      break;
    case HandshakeType::kRefusal:
      break;
  }
  return false;
}

void Authenticator::on_hello(const HandshakeMessage& hello) {
  auto nonce = fresh_nonce();
  if (!nonce.is_ok()) {
    refuse(RefusalReason::kProtocol, "internal error", nonce.status());
    return;
  }
  transcript_.initiator_nonce = hello.nonce;
  transcript_.acceptor_nonce = *nonce;
  transcript_.dialed_address = hello.address;
  HandshakeMessage challenge;
  challenge.type = HandshakeType::kChallenge;
  challenge.nonce = transcript_.acceptor_nonce;
  challenge.address = transcript_.listener_address;
  challenge.proof = compute_proof(*options_.swarm_key, HandshakeRole::kAcceptor, transcript_);
  state_ = State::kAwaitProof;
  send_message(challenge);
}

void Authenticator::on_challenge(const HandshakeMessage& challenge) {
  transcript_.acceptor_nonce = challenge.nonce;
  transcript_.listener_address = challenge.address;
  const Proof expected = compute_proof(*options_.swarm_key, HandshakeRole::kAcceptor, transcript_);
  if (!proofs_equal(expected, challenge.proof)) {
    Status status = unavailable_error(fmt::format(
        "swarm key mismatch: {} proved a different swarm key than ours (fingerprint {}); {}",
        endpoint_.peer_address(), options_.swarm_key->fingerprint(), kKeyHint));
    record_refusal(AuthGate::Counter::kKeyMismatch, status);
    refuse(RefusalReason::kKeyMismatch, "your proof did not verify with our swarm key", status);
    return;
  }
  HandshakeMessage proof;
  proof.type = HandshakeType::kProof;
  proof.proof = compute_proof(*options_.swarm_key, HandshakeRole::kInitiator, transcript_);
  send_message(proof);
  become_authenticated();
}

void Authenticator::on_proof(const HandshakeMessage& proof) {
  const Proof expected = compute_proof(*options_.swarm_key, HandshakeRole::kInitiator, transcript_);
  if (!proofs_equal(expected, proof.proof)) {
    Status status = unavailable_error(
        fmt::format("swarm key mismatch: {} sent a proof that does not verify with our swarm key "
                    "(fingerprint {}), or replayed another connection's",
                    endpoint_.peer_address(), options_.swarm_key->fingerprint()));
    record_refusal(AuthGate::Counter::kKeyMismatch, status);
    refuse(RefusalReason::kKeyMismatch, "your proof did not verify with our swarm key", status);
    return;
  }
  become_authenticated();
}

void Authenticator::on_refusal(const HandshakeMessage& refusal) {
  Status status;
  AuthGate::Counter counter = AuthGate::Counter::kProtocolErrors;
  switch (refusal.reason) {
    case RefusalReason::kKeyMismatch:
      counter = AuthGate::Counter::kKeyMismatch;
      status = unavailable_error(fmt::format("swarm key mismatch: {} refused our proof ({}); {}",
                                             endpoint_.peer_address(), refusal.text, kKeyHint));
      break;
    case RefusalReason::kNoKey:
      counter = AuthGate::Counter::kUnauthenticated;
      status = unavailable_error(fmt::format(
          "peer did not authenticate: {} has no swarm key and accepts anyone, but this process "
          "has one; {}",
          endpoint_.peer_address(), kKeyHint));
      break;
    case RefusalReason::kBusy:
      counter = AuthGate::Counter::kRateLimited;
      status = unavailable_error(
          fmt::format("{} refused the connection: {}", endpoint_.peer_address(), refusal.text));
      break;
    case RefusalReason::kProtocol:
      status = protocol_error(fmt::format("{} refused the swarm handshake: {}",
                                          endpoint_.peer_address(), refusal.text));
      break;
  }
  record_refusal(counter, status);
  state_ = State::kRefusing;
  refusal_ = status;
  endpoint_.fail(status);
}

bool Authenticator::admit_header(const FrameHeader& header) {
  if (state_ == State::kRefusing) return false;
  if (header.tensor_count == 0 && header.payload_len == 0 &&
      header.prefix_and_metadata_len() <= kMaxUnauthenticatedFrameBytes) {
    return true;
  }
  on_unauthenticated_frame(header);
  return false;
}

void Authenticator::on_unauthenticated_frame(const FrameHeader& header) {
  if (state_ == State::kAwaitChallenge) {
    Status status = protocol_error(
        fmt::format("peer did not authenticate: {} sent a {} frame instead of the swarm handshake",
                    endpoint_.peer_address(), frame_kind_name(header.kind)));
    record_refusal(AuthGate::Counter::kUnauthenticated, status);
    refuse(RefusalReason::kProtocol, "expected the swarm handshake", status);
    return;
  }
  // Acceptor: a keyless peer (or a stranger) called before proving the key. Nothing is dispatched;
  // a request gets an error reply naming the cause, so the caller fails at once, not at its
  // deadline.
  Status status = unavailable_error(
      fmt::format("peer did not authenticate: {} requires its swarm key, and {} presented none; {}",
                  transcript_.listener_address, endpoint_.peer_address(), kKeyHint));
  record_refusal(AuthGate::Counter::kUnauthenticated, status);
  state_ = State::kRefusing;
  refusal_ = status;
  if (header.kind != FrameKind::kRequest) {
    endpoint_.fail(status);
    return;
  }
  OutgoingFrame reply;
  reply.kind = FrameKind::kError;
  reply.request_id = header.request_id;
  reply.status = StatusCode::kUnavailable;
  const std::string text = fmt::format(
      "peer did not authenticate: {} requires its swarm key and this connection presented none; "
      "{}",
      transcript_.listener_address, kKeyHint);
  reply.message.metadata.assign(text.begin(), text.end());
  send_then_linger(std::move(reply));
}

void Authenticator::become_authenticated() {
  state_ = State::kAuthenticated;
  leave_pending();
  if (deadline_timer_ != 0) endpoint_.worker_.cancel_timer_on_loop(deadline_timer_);
  deadline_timer_ = 0;
  gate_.count(AuthGate::Counter::kAuthenticated);
  if (on_accept_) {
    AcceptCallback on_accept = std::move(on_accept_);
    on_accept_ = nullptr;
    endpoint_.set_callbacks(on_accept(endpoint_.shared_from_this()));
  }
  endpoint_.release_held_sends();
}

void Authenticator::send_message(const HandshakeMessage& message) {
  OutgoingFrame frame;
  frame.kind = FrameKind::kMessage;
  frame.method = std::string(kHandshakeMethod);
  frame.message.metadata = encode_handshake(message);
  endpoint_.send_now(std::move(frame), nullptr);
}

void Authenticator::refuse(RefusalReason reason, const std::string& text, const Status& status) {
  state_ = State::kRefusing;
  refusal_ = status;
  leave_pending();
  HandshakeMessage refusal;
  refusal.type = HandshakeType::kRefusal;
  refusal.reason = reason;
  refusal.text = text;
  OutgoingFrame frame;
  frame.kind = FrameKind::kMessage;
  frame.method = std::string(kHandshakeMethod);
  frame.message.metadata = encode_handshake(refusal);
  send_then_linger(std::move(frame));
}

void Authenticator::send_then_linger(OutgoingFrame frame) {
  // Failing at once would drop what we are telling the peer, and failing as soon as it left is not
  // enough either: on UCX's shared-memory transports (1.18) the close reached the peer before the
  // message did ("Connection reset by remote peer" instead of the reason). So the connection stays
  // open, reading nothing (kRefusing), until the peer, told why, closes it, or until
  // kRefusalLinger.
  std::weak_ptr<EndpointBase> weak = endpoint_.weak_from_this();
  endpoint_.send_now(std::move(frame), [weak](const Status& sent) {
    auto ep = weak.lock();
    if (!ep || ep->failed() || !ep->authenticator_) return;
    Authenticator& self = *ep->authenticator_;
    if (!sent.is_ok()) {
      ep->fail(self.refusal_);
      return;
    }
    if (self.deadline_timer_ != 0) ep->worker_.cancel_timer_on_loop(self.deadline_timer_);
    self.deadline_timer_ =
        ep->worker_.add_timer_on_loop(SteadyClock::now() + kRefusalLinger, [weak] {
          auto lingering = weak.lock();
          if (!lingering || !lingering->authenticator_) return;
          lingering->authenticator_->deadline_timer_ = 0;
          if (!lingering->failed()) lingering->fail(lingering->authenticator_->refusal_);
        });
  });
}

void Authenticator::record_refusal(AuthGate::Counter counter, const Status& status) {
  gate_.count(counter);
  const std::string host = source_host(endpoint_.peer_address());
  if (gate_.first_refusal_from(host)) {
    logger("transport")
        ->warn("{} (further refusals of {} are counted in the metrics, not logged)",
               status.message(), host);
  }
}

void Authenticator::on_endpoint_failed() {
  leave_pending();
  if (deadline_timer_ != 0) endpoint_.worker_.cancel_timer_on_loop(deadline_timer_);
  deadline_timer_ = 0;
  on_accept_ = nullptr;
}

void Authenticator::leave_pending() {
  if (!in_pending_) return;
  in_pending_ = false;
  gate_.remove_pending(pending_);
}

}  // namespace hivemind::transport
