#include "endpoint_base.h"

#include <hivemind/common/logging.h>

namespace hivemind::transport {

void EndpointBase::send(OutgoingFrame frame, SendCallback done) {
  auto self = shared_from_this();
  auto run = [self, frame = std::move(frame), done = std::move(done)]() mutable {
    if (self->failed_) {
      self->complete_send(done, self->error());
      return;
    }
    if (frame.method.size() > 0xffff || frame.message.metadata.size() > 0xffffffffull ||
        frame.message.tensors.size() > 0xffffffffull) {
      self->complete_send(done,
                          invalid_argument_error("frame fields exceed the wire format's ranges"));
      return;
    }
    if (self->authenticator_ && !self->authenticator_->authenticated()) {
      self->held_sends_.emplace_back(std::move(frame), std::move(done));
      return;
    }
    self->send_on_loop(std::move(frame), std::move(done));
  };
  if (worker_.in_thread()) {
    // Still deferred: a send issued from inside a callback must not re-enter the backend.
    worker_.defer(std::move(run));
  } else {
    worker_.post(std::move(run));
  }
}

void EndpointBase::close() {
  auto self = shared_from_this();
  auto run = [self] {
    self->closed_by_owner_ = true;
    self->fail(canceled_error("endpoint closed locally"));
  };
  if (worker_.in_thread())
    run();
  else
    worker_.post(run);
}

Status EndpointBase::error() const {
  std::lock_guard lock(error_mu_);
  return error_;
}

void EndpointBase::fail(const Status& cause) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  if (failed_) return;
  failed_ = true;
  // A connection this side refused in the handshake reports why it refused, not how it ended.
  const Status status =
      authenticator_ && authenticator_->refusal() ? *authenticator_->refusal() : cause;
  {
    std::lock_guard lock(error_mu_);
    error_ = status;
  }
  if (status.code() != StatusCode::kCanceled) {
    logger("transport")
        ->debug("{} endpoint to {} failed: {}", backend(), peer_, status.to_string());
  }
  auto self = shared_from_this();
  if (authenticator_) authenticator_->on_endpoint_failed();
  for (auto& [frame, done] : held_sends_)
    complete_send(done, status);
  held_sends_.clear();
  on_failed(status);
  worker_.defer([self, status] {
    if (self->callbacks_.on_error) self->callbacks_.on_error(status);
    // Drop the callbacks: they usually capture their owner, which may own this endpoint.
    self->callbacks_ = {};
    self->worker_.endpoints.erase(self);
  });
}

void EndpointBase::send_now(OutgoingFrame frame, SendCallback done) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  if (failed_) {
    complete_send(done, error());
    return;
  }
  send_on_loop(std::move(frame), std::move(done));
}

void EndpointBase::release_held_sends() {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  std::vector<std::pair<OutgoingFrame, SendCallback>> held;
  held.swap(held_sends_);
  for (auto& [frame, done] : held)
    send_now(std::move(frame), std::move(done));
}

void EndpointBase::complete_send(SendCallback& done, Status status) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  if (!done) return;
  worker_.defer([done = std::move(done), status = std::move(status)] { done(status); });
  done = nullptr;
}

Result<std::vector<Buffer>> EndpointBase::allocate(const FrameHeader& header,
                                                   const ReceivedFrame& frame,
                                                   std::span<const TensorDescriptor> descriptors) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  if (header.tensor_count == 0) return std::vector<Buffer>{};
  incoming_sizes_.clear();
  incoming_types_.clear();
  for (const auto& d : descriptors) {
    incoming_sizes_.push_back(d.nbytes);
    incoming_types_.push_back(d.memory_type);
  }
  const IncomingFrame incoming{frame.method, frame.message.metadata, incoming_sizes_,
                               incoming_types_};
  Result<std::vector<Buffer>> buffers =
      callbacks_.allocate ? callbacks_.allocate(header, incoming) : host_allocator()(incoming);
  if (!buffers.is_ok()) return buffers;
  HIVEMIND_RETURN_IF_ERROR(check_allocation(incoming, *buffers));
  return buffers;
}

void EndpointBase::deliver(ReceivedFrame frame) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  if (failed_) return;
  if (authenticator_ && !authenticator_->admit(frame)) return;
  auto self = shared_from_this();
  // Deferred ahead of any on_error a later failure defers, so the order holds: frames, then error.
  worker_.defer([self, frame = std::move(frame)]() mutable {
    if (!self->closed_by_owner_ && self->callbacks_.on_frame)
      self->callbacks_.on_frame(std::move(frame));
  });
}

void ListenerBase::close() {
  auto self = shared_from_this();
  auto run = [self] {
    if (self->closed_) return;
    self->closed_ = true;
    self->close_on_loop();
    self->worker_.defer([self] { self->worker_.listeners.erase(self); });
  };
  if (worker_.in_thread())
    run();
  else
    worker_.post(run);
}

}  // namespace hivemind::transport
