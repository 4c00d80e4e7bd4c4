// Responder: the one reply a handler owes to a request.
#pragma once

#include <memory>

#include <hivemind/common/result.h>
#include <hivemind/transport/message.h>

namespace hivemind::transport::rpc {

class Responder {
 public:
  struct State;
  explicit Responder(std::shared_ptr<State> state);
  Responder(Responder&&) noexcept;
  Responder& operator=(Responder&&) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  // Replies kInternal "handler dropped the request without replying" if reply() was never called.
  ~Responder();

  // Sends the response, or the error (its code and message reach the caller). Thread-safe; the
  // first call wins, later ones are ignored (and logged).
  void reply(Result<Message> response);
  bool replied() const;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace hivemind::transport::rpc
