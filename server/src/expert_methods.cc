#include "expert_methods.h"

#include <memory>
#include <string>

#include <fmt/format.h>
#include <torch/types.h>

#include <hivemind/common/logging.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/quant/codec.h>
#include <hivemind/transport/buffer.h>

#include "wire_batch.h"

namespace hivemind::server {

void ExpertMethods::serve_on(transport::rpc::Server& listener) {
  listener.handle(std::string(protocol::kInfoMethod),
                  [this](transport::Message m, transport::rpc::Responder r) {
                    handle_info(std::move(m), std::move(r));
                  });
  listener.handle(std::string(protocol::kForwardMethod),
                  [this](transport::Message m, transport::rpc::Responder r) {
                    handle_call(false, std::move(m), std::move(r));
                  });
  listener.handle(std::string(protocol::kBackwardMethod),
                  [this](transport::Message m, transport::rpc::Responder r) {
                    handle_call(true, std::move(m), std::move(r));
                  });
}

void ExpertMethods::handle_info(transport::Message request,
                                transport::rpc::Responder responder) const {
  auto uid = protocol::decode_call(request.metadata);
  if (!uid.is_ok()) return responder.reply(uid.status().with_context("info request"));
  const HostedExpert* expert = experts_.find(*uid);
  if (!expert) {
    return responder.reply(
        not_found_error(fmt::format("this server does not host expert '{}'", *uid)));
  }
  transport::Message reply;
  reply.metadata = protocol::encode_expert_info(expert->info);
  responder.reply(std::move(reply));
}

void ExpertMethods::handle_call(bool backward, transport::Message request,
                                transport::rpc::Responder responder) const {
  const SteadyTime arrived = SteadyClock::now();
  const char* method = backward ? "backward" : "forward";
  auto uid = protocol::decode_call(request.metadata);
  if (!uid.is_ok())
    return responder.reply(uid.status().with_context(fmt::format("{} request", method)));
  const HostedExpert* found = experts_.find(*uid);
  if (!found) {
    return responder.reply(
        not_found_error(fmt::format("this server does not host expert '{}'", *uid)));
  }
  const HostedExpert& expert = *found;
  const CallMetrics& metrics = backward ? expert.backward_metrics : expert.forward_metrics;
  metrics.requests->inc();
  auto fail = [&](Status status) {
    metrics.finished(false, arrived);
    responder.reply(std::move(status));
  };
  if (refusing_.load())
    return fail(unavailable_error("the server is shutting down and accepts no new requests"));
  const std::vector<runtime::TensorSchema>& schemas =
      backward ? expert.backward_in : expert.forward_in;
  const std::string what = fmt::format("expert '{}' {}", *uid, method);
  if (request.tensors.size() != schemas.size()) {
    return fail(invalid_argument_error(fmt::format(
        "{}: got {} tensor(s), expected {}{}", what, request.tensors.size(), schemas.size(),
        backward ? " (the inputs, then one gradient per output)" : "")));
  }
  // Headers only here (cheap, and everything is validated before any byte is trusted); the payloads
  // are dequantized by the compute thread, straight into the batch.
  int64_t batch = -1;
  std::vector<torch::Tensor> wire;
  wire.reserve(schemas.size());
  for (size_t i = 0; i < schemas.size(); ++i) {
    const transport::Buffer& buffer = request.tensors[i];
    if (!buffer.is_host())
      return fail(unsupported_error(fmt::format("{}: tensor {} is not in host memory", what, i)));
    const runtime::TensorSchema& s = schemas[i];
    // The bytes have arrived already; the header is checked against them. Too many samples gets its
    // own message below rather than a codec limit error.
    quant::DecodeLimits limits;
    limits.max_ndim = static_cast<uint32_t>(s.shape.size() + 1);
    auto header =
        quant::decode_header({static_cast<const uint8_t*>(buffer.data()), buffer.size()}, limits);
    if (!header.is_ok())
      return fail(header.status().with_context(fmt::format("{} tensor {}", what, i)));
    bool shape_ok = header->shape.size() == s.shape.size() + 1;
    for (size_t d = 0; shape_ok && d < s.shape.size(); ++d)
      shape_ok = header->shape[d + 1] == s.shape[d];
    if (!shape_ok || !quant::decodable_as(*header, s.dtype)) {
      return fail(invalid_argument_error(fmt::format(
          "{} tensor {}: got {}[{}], expected {}", what, i, quant::dtype_name(header->src_dtype),
          fmt::join(header->shape, ", "), runtime::schema_string(s))));
    }
    if (batch < 0) batch = header->shape[0];
    if (batch > max_batch_size_) {
      return fail(
          invalid_argument_error(fmt::format("{}: the request has {} samples, more than "
                                             "max_batch_size={}; split it into smaller requests",
                                             what, batch, max_batch_size_)));
    }
    if (header->shape[0] != batch) {
      return fail(
          invalid_argument_error(fmt::format("{} tensor {} has batch size {}, but tensor 0 has {}",
                                             what, i, header->shape[0], batch)));
    }
    wire.push_back(wrap_wire_bytes(buffer));
  }
  const std::vector<runtime::TensorSchema>& out_schemas =
      backward ? expert.forward_in : expert.backend->output_schema();
  auto shared = std::make_shared<transport::rpc::Responder>(std::move(responder));
  const int threads = encode_threads_;
  // `expert` lives as long as the server, which outlives every task (shutdown drains the pools).
  runtime::TaskDone done = [shared, &out_schemas, &metrics, arrived,
                            threads](runtime::TaskResult result) {
    Result<transport::Message> reply = result.is_ok()
                                           ? encode_outputs(*result, out_schemas, threads)
                                           : Result<transport::Message>(result.status());
    metrics.finished(reply.is_ok(), arrived);
    shared->reply(std::move(reply));
  };
  runtime::TaskPool& pool = backward ? *expert.backward : *expert.forward;
  Status submitted = pool.submit(std::move(wire), batch, std::move(done));
  if (!submitted.is_ok()) {
    metrics.finished(false, arrived);
    return shared->reply(submitted);
  }
  logger("server")->debug("{}: queued {} sample(s)", what, batch);
}

}  // namespace hivemind::server
