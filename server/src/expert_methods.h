// The expert methods a server answers on its listener (protocol/expert_rpc.h):
//
//   info      -> protocol::ExpertInfo of the expert (schemas, max_batch_size)
//   forward   -> the expert's outputs for the request's inputs
//   backward  -> the gradients of the inputs; one optimizer step per backward batch
//
// On the I/O thread each call is validated (uid, tensor count, the quant headers against the
// expert's schema, batch size) and its still-encoded tensors are queued in the expert's TaskPool
// without a copy; the reply is encoded on the compute thread (wire_batch.h). A malformed request
// fails alone with an error reply.
#pragma once

#include <atomic>
#include <cstdint>

#include <hivemind/transport/message.h>
#include <hivemind/transport/rpc/responder.h>
#include <hivemind/transport/rpc/server.h>

#include "hosted_experts.h"

namespace hivemind::server {

class ExpertMethods {
 public:
  // `experts` must outlive this object; `encode_threads` are the CPU threads that encode a reply.
  ExpertMethods(const HostedExperts& experts, int64_t max_batch_size, int encode_threads)
      : experts_(experts), max_batch_size_(max_batch_size), encode_threads_(encode_threads) {}

  // Registers info, forward and backward on `listener`, whose handlers then call into this object:
  // it must outlive them (the server closes the listener before it lets go of the methods).
  void serve_on(transport::rpc::Server& listener);

  // From now on forward and backward calls get Unavailable: the server is draining. Thread-safe.
  void refuse_new_calls() { refusing_.store(true); }

 private:
  void handle_info(transport::Message request, transport::rpc::Responder responder) const;
  void handle_call(bool backward, transport::Message request,
                   transport::rpc::Responder responder) const;

  const HostedExperts& experts_;
  const int64_t max_batch_size_;
  const int encode_threads_;
  std::atomic<bool> refusing_{false};
};

}  // namespace hivemind::server
