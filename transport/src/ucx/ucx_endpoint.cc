// UCX endpoint: one active message per frame; the receiver allocates before the payload lands.
#include "ucx/ucx_endpoint.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include <fmt/format.h>
#include <unistd.h>

#include <hivemind/common/byte_order.h>
#include <hivemind/common/errno_text.h>
#include <hivemind/common/logging.h>

#include "ucx/ucx_worker_impl.h"

namespace hivemind::transport {

namespace {

void send_cb(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<UcxEndpoint::SendOp*>(user_data);
  ucp_request_free(request);
  op->ep->send_done(op, status);
}

void control_cb(void* request, ucs_status_t, void* user_data) {
  auto* op = static_cast<UcxEndpoint::ControlOp*>(user_data);
  ucp_request_free(request);
  auto ep = op->ep;  // control_done() destroys op
  ep->control_done(op);
}

void recv_cb(void* request, ucs_status_t status, size_t, void* user_data) {
  auto* op = static_cast<UcxEndpoint::RecvOp*>(user_data);
  ucp_request_free(request);
  op->ep->recv_done(op, status);
}

}  // namespace

UcxEndpoint::UcxEndpoint(Worker::Impl& worker, UcxWorkerImpl& ucx, std::string peer)
    : EndpointBase(worker, std::move(peer)), ucx_(ucx) {}

UcxEndpoint::~UcxEndpoint() = default;

void UcxEndpoint::send_on_loop(OutgoingFrame frame, SendCallback done) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  auto& msg = frame.message;
  MemoryType mem = MemoryType::kHost;
  for (size_t i = 0; i < msg.tensors.size(); ++i) {
    if (i == 0)
      mem = msg.tensors[i].memory_type();
    else if (msg.tensors[i].memory_type() != mem) {
      complete_send(done, unsupported_error("one UCX message carries one memory type; stage device "
                                            "tensors or send them separately"));
      return;
    }
  }
  if (mem == MemoryType::kCuda && !worker_.context->ucx_supports_memory_type(MemoryType::kCuda)) {
    // Never hand device memory to UCX as host memory.
    complete_send(
        done, unsupported_error("this UCX cannot move CUDA memory; stage device tensors first"));
    return;
  }
  FrameHeader h;
  h.kind = frame.kind;
  h.request_id = frame.request_id;
  h.status = static_cast<uint16_t>(frame.status);
  h.method_len = static_cast<uint16_t>(frame.method.size());
  h.metadata_len = static_cast<uint32_t>(msg.metadata.size());
  h.tensor_count = static_cast<uint32_t>(msg.tensors.size());
  descriptors_.clear();
  for (const auto& t : msg.tensors) {
    descriptors_.push_back({t.size(), t.memory_type()});
    h.payload_len += t.size();
  }
  SendOp* op = new_send_op();
  op->ep = std::static_pointer_cast<UcxEndpoint>(shared_from_this());
  op->done = std::move(done);
  bool split = h.prefix_and_metadata_len() > ucx_.am_header_budget();
  uint64_t seq = 0;
  if (split) {
    h.flags |= kFrameFlagSplitMetadata;
    seq = next_split_seq_++;
    op->header.resize(h.prefix_len() + 8);
    encode_prefix(h, frame.method, descriptors_, std::span(op->header).first(h.prefix_len()));
    store_le<uint64_t>(op->header.data() + h.prefix_len(), seq);
  } else {
    op->header.resize(h.prefix_and_metadata_len());
    encode_prefix(h, frame.method, descriptors_, std::span(op->header).first(h.prefix_len()));
    if (!msg.metadata.empty())
      std::memcpy(op->header.data() + h.prefix_len(), msg.metadata.data(), msg.metadata.size());
  }
  op->message = std::move(msg);
  for (const auto& t : op->message.tensors) {
    if (t.size() > 0) op->iov.push_back({t.data(), t.size()});
  }

  if (split) {
    // Forced eager: the metadata is small enough and must not need an allocation round of its own.
    op->metadata_header.resize(8);
    store_le<uint64_t>(op->metadata_header.data(), seq);
    issue(op, kAmMetadata, op->metadata_header.data(), 8, op->message.metadata.data(),
          op->message.metadata.size(), false, UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER,
          MemoryType::kHost);
  }
  op->frame_header_len = op->header.size();
  const ContextOptions& options = worker_.context->options();
  const uint64_t same_host_threshold = options.ucx_same_host_copy_threshold;
  // Only between members of a swarm (same_host_copy.h): the receiver reads the process the sender
  // names, which an anonymous peer must not be able to choose.
  const bool same_host =
      options.auth.swarm_key != nullptr && !split && !same_host_unreachable_ &&
      mem == MemoryType::kHost && same_host_threshold > 0 && h.payload_len >= same_host_threshold &&
      op->header.size() + same_host_trailer_size(h.tensor_count) <= ucx_.am_header_budget();
  if (same_host) {
    // The receiver reads the payload from here (same_host_copy.h); the send completes once it
    // replied (and, after a read, once our confirmation is out).
    SameHostTrailer trailer;
    trailer.token = next_same_host_token_++;
    trailer.pid = static_cast<uint32_t>(::getpid());
    trailer.host = this_host();
    trailer.addresses.reserve(op->message.tensors.size());
    for (const auto& t : op->message.tensors)
      trailer.addresses.push_back(reinterpret_cast<uintptr_t>(t.data()));
    append_same_host_trailer(trailer, op->header);
    op->same_host_token = trailer.token;
    op->awaiting_same_host_reply = true;
    ++op->outstanding;
    same_host_sends_.emplace(trailer.token, op);
    issue(op, kAmSameHostFrame, op->header.data(), op->header.size(), nullptr, 0, false,
          UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER, MemoryType::kHost);
    if (!op->status.is_ok()) {
      // Not sent: no reply will come.
      same_host_sends_.erase(trailer.token);
      op->awaiting_same_host_reply = false;
      --op->outstanding;
    }
  } else {
    issue_frame(op, h.payload_len, mem);
  }
  if (op->outstanding == 0) send_done(op, UCS_OK);
}

void UcxEndpoint::issue(SendOp* op, unsigned id, const void* header, size_t header_len,
                        const void* buffer, size_t count, bool iov, uint32_t flags,
                        MemoryType mem) {
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  param.cb.send = send_cb;
  param.user_data = op;
  param.flags = flags;
  if (iov) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
    param.datatype = ucp_dt_make_iov();
  }
  if (mem == MemoryType::kCuda) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMORY_TYPE;
    param.memory_type = UCS_MEMORY_TYPE_CUDA;
  }
  ++op->outstanding;
  ucs_status_ptr_t r = ucp_am_send_nbx(ep_, id, header, header_len, buffer, count, &param);
  if (r == nullptr) {
    --op->outstanding;
  } else if (UCS_PTR_IS_ERR(r)) {
    --op->outstanding;
    if (op->status.is_ok())
      op->status = ucs_to_status(UCS_PTR_STATUS(r), "ucp_am_send_nbx to " + peer_);
  }
}

uint64_t UcxEndpoint::rndv_threshold(MemoryType mem) {
  const ContextOptions& options = worker_.context->options();
  if (mem != MemoryType::kHost) return options.ucx_rndv_threshold;
  if (!lanes_classified_ && established_) {
    // Known once a frame went through (the wireup is over). Transports that copy on both sides
    // anyway; anything else (RDMA, GPU, xpmem) keeps the zero-copy rendezvous from 16 KiB.
    static constexpr std::string_view kCopying[] = {"posix/", "sysv/", "cma/", "tcp/", "self/"};
    lanes_classified_ = true;
    const std::vector<std::string> in_use = lanes();
    bool copying = false;
    for (const std::string& lane : in_use) {
      if (lane == kSameHostCopyLane) continue;
      copying = std::any_of(std::begin(kCopying), std::end(kCopying),
                            [&](std::string_view t) { return lane.compare(0, t.size(), t) == 0; });
      if (!copying) break;
    }
    host_rndv_threshold_ =
        copying ? std::max(options.ucx_rndv_threshold, options.ucx_copy_lanes_rndv_threshold)
                : options.ucx_rndv_threshold;
  }
  return lanes_classified_ ? host_rndv_threshold_ : options.ucx_rndv_threshold;
}

void UcxEndpoint::issue_frame(SendOp* op, uint64_t payload_len, MemoryType mem) {
  uint32_t flags = UCP_AM_SEND_FLAG_REPLY;
  if (payload_len > 0) {
    flags |= payload_len >= rndv_threshold(mem) ? UCP_AM_SEND_FLAG_RNDV : UCP_AM_SEND_FLAG_EAGER;
  }
  if (op->iov.size() == 1) {
    issue(op, kAmFrame, op->header.data(), op->frame_header_len, op->iov[0].buffer,
          op->iov[0].length, false, flags, mem);
  } else {
    issue(op, kAmFrame, op->header.data(), op->frame_header_len,
          op->iov.empty() ? nullptr : op->iov.data(), op->iov.size(), !op->iov.empty(), flags, mem);
  }
}

void UcxEndpoint::send_done(SendOp* op, ucs_status_t status) {
  if (status != UCS_OK && op->status.is_ok())
    op->status = ucs_to_status(status, "send to " + peer_);
  if (status == UCS_OK) established_ = true;
  // A split frame is two active messages: the op completes with the second of them.
  if (op->outstanding > 0 && --op->outstanding > 0) return;
  std::unique_ptr<SendOp> finished = take_send_op(op);
  // The op's reference may be the endpoint's last: it lives until this function returns.
  const std::shared_ptr<UcxEndpoint> self = std::move(finished->ep);
  Status st = std::move(finished->status);
  if (!st.is_ok() && failed_) st = error();
  SendCallback done = std::move(finished->done);
  recycle_send_op(std::move(finished));
  complete_send(done, std::move(st));
}

UcxEndpoint::SendOp* UcxEndpoint::new_send_op() {
  std::unique_ptr<SendOp> op;
  if (spare_sends_.empty()) {
    op = std::make_unique<SendOp>();
  } else {
    op = std::move(spare_sends_.back());
    spare_sends_.pop_back();
  }
  op->slot = sends_.size();
  sends_.push_back(std::move(op));
  return sends_.back().get();
}

std::unique_ptr<UcxEndpoint::SendOp> UcxEndpoint::take_send_op(SendOp* op) {
  const size_t slot = op->slot;
  std::unique_ptr<SendOp> taken = std::move(sends_[slot]);
  if (slot + 1 != sends_.size()) {
    sends_[slot] = std::move(sends_.back());
    sends_[slot]->slot = slot;
  }
  sends_.pop_back();
  return taken;
}

void UcxEndpoint::recycle_send_op(std::unique_ptr<SendOp> op) {
  if (spare_sends_.size() >= kMaxSpareSends) return;
  // Back to a fresh op, keeping the vectors' capacity; the payload's buffers are released now.
  op->header.clear();
  op->metadata_header.clear();
  op->message.metadata.clear();
  op->message.tensors.clear();
  op->iov.clear();
  op->done = nullptr;
  op->outstanding = 0;
  op->status = Status();
  op->frame_header_len = 0;
  op->same_host_token = 0;
  op->awaiting_same_host_reply = false;
  spare_sends_.push_back(std::move(op));
}

void UcxEndpoint::cancel_unfinished_sends() {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  auto self = shared_from_this();  // each op holds a reference; the last may be among them
  same_host_sends_.clear();
  std::vector<SendOp*> unfinished;
  unfinished.reserve(sends_.size());
  for (const auto& op : sends_)
    unfinished.push_back(op.get());
  for (SendOp* op : unfinished) {
    op->outstanding = 0;
    op->awaiting_same_host_reply = false;
    send_done(op, UCS_ERR_CANCELED);
  }
  controls_.clear();  // their requests die with the worker too
}

void UcxEndpoint::control_done(ControlOp* op) {
  controls_.erase(op);
}

ucs_status_t UcxEndpoint::on_frame_am(const void* header, size_t header_length, void* data,
                                      size_t length, const ucp_am_recv_param_t* param) {
  bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  if (failed_) return UCS_OK;
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(header), header_length);
  auto decoded = decode_header(bytes, worker_.context->options().limits);
  if (!decoded.is_ok()) {
    fail(decoded.status().with_context("malformed frame from " + peer_));
    return UCS_OK;
  }
  const FrameHeader& h = *decoded;
  // Before the swarm handshake: nothing beyond a small frame is received (no rendezvous, no data).
  if (!admit_header(h)) return UCS_OK;
  if ((h.flags & kFrameFlagSplitMetadata) == 0) {
    if (header_length != h.prefix_and_metadata_len()) {
      fail(protocol_error("frame header length mismatch from " + peer_));
      return UCS_OK;
    }
    return process(h, bytes.first(h.prefix_len()), bytes.subspan(h.prefix_len()), data, length,
                   rndv);
  }
  if (header_length != h.prefix_len() + 8) {
    fail(protocol_error("split frame header length mismatch from " + peer_));
    return UCS_OK;
  }
  uint64_t seq = load_le<uint64_t>(bytes.data() + h.prefix_len());
  auto meta = split_metadata_.find(seq);
  if (meta != split_metadata_.end()) {
    std::vector<uint8_t> metadata = std::move(meta->second);
    split_metadata_.erase(meta);
    if (metadata.size() != h.metadata_len) {
      fail(protocol_error("split metadata length mismatch from " + peer_));
      return UCS_OK;
    }
    return process(h, bytes.first(h.prefix_len()), metadata, data, length, rndv);
  }
  // The metadata has not arrived yet: hold the frame. A rendezvous descriptor stays valid while we
  // return UCS_INPROGRESS; eager data is copied (this path only serves oversized metadata).
  if (held_.size() >= 64 || held_.count(seq) != 0) {
    fail(protocol_error("too many frames waiting for their metadata from " + peer_));
    return UCS_OK;
  }
  HeldFrame held;
  held.prefix.assign(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(h.prefix_len()));
  held.header = h;
  held.length = length;
  held.rndv = rndv;
  if (rndv) {
    held.data = data;
  } else {
    const auto* d = static_cast<const uint8_t*>(data);
    held.eager.assign(d, d + length);
  }
  held_.emplace(seq, std::move(held));
  return rndv ? UCS_INPROGRESS : UCS_OK;
}

ucs_status_t UcxEndpoint::on_metadata_am(const void* header, size_t header_length, void* data,
                                         size_t length, const ucp_am_recv_param_t* param) {
  if (failed_) return UCS_OK;
  if (!peer_authenticated()) {
    fail(protocol_error("split metadata before the swarm handshake from " + peer_));
    return UCS_OK;
  }
  if (header_length != 8 || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0 ||
      length > worker_.context->options().limits.max_metadata_bytes) {
    fail(protocol_error("malformed metadata message from " + peer_));
    return UCS_OK;
  }
  uint64_t seq = load_le<uint64_t>(static_cast<const uint8_t*>(header));
  const auto* d = static_cast<const uint8_t*>(data);
  std::vector<uint8_t> metadata(d, d + length);
  auto held = held_.find(seq);
  if (held == held_.end()) {
    if (split_metadata_.size() >= 64 || split_metadata_.count(seq) != 0) {
      fail(protocol_error("too much unpaired metadata from " + peer_));
      return UCS_OK;
    }
    split_metadata_.emplace(seq, std::move(metadata));
    return UCS_OK;
  }
  HeldFrame frame = std::move(held->second);
  held_.erase(held);
  if (metadata.size() != frame.header.metadata_len) {
    if (frame.rndv) ucp_am_data_release(ucx_.handle(), frame.data);
    fail(protocol_error("split metadata length mismatch from " + peer_));
    return UCS_OK;
  }
  ucs_status_t st = process(frame.header, frame.prefix, metadata,
                            frame.rndv ? frame.data : frame.eager.data(), frame.length, frame.rndv);
  // Outside the frame's own callback UCX no longer looks at our answer: release what we declined.
  if (frame.rndv && st == UCS_OK && !recvs_started_last_)
    ucp_am_data_release(ucx_.handle(), frame.data);
  return UCS_OK;
}

ucs_status_t UcxEndpoint::on_same_host_frame_am(const void* header, size_t header_length,
                                                size_t length, const ucp_am_recv_param_t* param) {
  if (failed_) return UCS_OK;
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(header), header_length);
  auto decoded = decode_header(bytes, worker_.context->options().limits);
  if (!decoded.is_ok()) {
    fail(decoded.status().with_context("malformed same-host frame from " + peer_));
    return UCS_OK;
  }
  const FrameHeader& h = *decoded;
  // Before the swarm handshake nothing beyond a small frame is accepted, and this is not one.
  if (!admit_header(h)) return UCS_OK;
  if (!peer_authenticated()) {
    fail(protocol_error("a same-host frame before the swarm handshake from " + peer_));
    return UCS_OK;
  }
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0 || length != 0 ||
      (h.flags & kFrameFlagSplitMetadata) != 0 ||
      header_length != h.prefix_and_metadata_len() + same_host_trailer_size(h.tensor_count)) {
    fail(protocol_error("malformed same-host frame from " + peer_));
    return UCS_OK;
  }
  auto trailer =
      decode_same_host_trailer(bytes.subspan(h.prefix_and_metadata_len()), h.tensor_count);
  ReceivedFrame frame;
  Status st = trailer.status();
  if (st.is_ok())
    st = parse_frame(h, bytes.first(h.prefix_len()), bytes.subspan(h.prefix_len(), h.metadata_len),
                     h.payload_len, frame);
  if (st.is_ok() && same_host_read_.count(trailer->token) != 0)
    st = protocol_error(fmt::format("same-host frame token {} reused", trailer->token));
  if (!st.is_ok()) {
    fail(st.with_context("malformed same-host frame from " + peer_));
    return UCS_OK;
  }
  SameHostReply reply;
  reply.token = trailer->token;
  if (!(trailer->host == this_host()) || worker_.context->options().auth.swarm_key == nullptr ||
      worker_.context->options().ucx_same_host_copy_threshold == 0) {
    // Another host (or container), or this process does not read on a peer's word (no swarm key,
    // or turned off): the sender sends it again the ordinary way.
    reply.outcome = SameHostOutcome::kUnreachable;
    send_same_host_reply(reply);
    return UCS_OK;
  }
  auto buffers = allocate(h, frame, descriptors_);
  if (!buffers.is_ok()) {
    frame.refused = buffers.status();
    deliver(std::move(frame));
    reply.outcome = SameHostOutcome::kReleased;
    send_same_host_reply(reply);
    return UCS_OK;
  }
  std::vector<std::span<uint8_t>> local;
  local.reserve(buffers->size());
  for (const Buffer& b : *buffers) {
    if (b.size() > 0 && !b.is_host()) {
      // Device memory is not ours to read into: UCX moves it (rendezvous) when sent again.
      reply.outcome = SameHostOutcome::kUnreachable;
      send_same_host_reply(reply);
      return UCS_OK;
    }
    local.emplace_back(static_cast<uint8_t*>(b.data()), b.size());
  }
  const int err = read_from_process(trailer->pid, trailer->addresses, local);
  if (err != 0) {
    reply.outcome = SameHostOutcome::kUnreachable;
    reply.error = static_cast<uint32_t>(err);
    send_same_host_reply(reply);
    return UCS_OK;
  }
  // Delivered only once the sender confirms that it still held these bytes when it answered:
  // until then they may be another message's (a send canceled meanwhile).
  frame.message.tensors = std::move(buffers).value();
  same_host_used_ = true;
  same_host_read_.emplace(reply.token, std::move(frame));
  reply.outcome = SameHostOutcome::kRead;
  send_same_host_reply(reply);
  return UCS_OK;
}

ucs_status_t UcxEndpoint::on_same_host_reply_am(const void* header, size_t header_length,
                                                size_t length, const ucp_am_recv_param_t* param) {
  if (failed_) return UCS_OK;
  auto reply = decode_same_host_reply({static_cast<const uint8_t*>(header), header_length});
  Status st = reply.status();
  if (st.is_ok() && (length != 0 || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0))
    st = protocol_error("a same-host reply carries data");
  auto awaiting = st.is_ok() ? same_host_sends_.find(reply->token) : same_host_sends_.end();
  if (st.is_ok() && awaiting == same_host_sends_.end())
    st = protocol_error(fmt::format("same-host reply for unknown token {}", reply->token));
  if (!st.is_ok()) {
    fail(st.with_context("malformed same-host reply from " + peer_));
    return UCS_OK;
  }
  SendOp* op = awaiting->second;
  same_host_sends_.erase(awaiting);
  op->awaiting_same_host_reply = false;
  switch (reply->outcome) {
    case SameHostOutcome::kRead:
      same_host_used_ = true;
      // We still hold the message (its op is alive): the bytes the peer read were its own.
      op->confirm = encode_same_host_confirm(reply->token);
      issue(op, kAmSameHostConfirm, op->confirm.data(), op->confirm.size(), nullptr, 0, false,
            UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER, MemoryType::kHost);
      break;
    case SameHostOutcome::kReleased:
      break;
    case SameHostOutcome::kUnreachable:
      if (!same_host_unreachable_) {
        logger("transport")
            ->debug(
                "{} cannot read from this process ({}): large payloads to it go through UCX", peer_,
                reply->error == 0 ? "another host" : errno_text(static_cast<int>(reply->error)));
      }
      same_host_unreachable_ = true;
      issue_frame(op, op->message.payload_bytes(), MemoryType::kHost);
      break;
  }
  send_done(op, UCS_OK);  // the reply's share of the op
  return UCS_OK;
}

ucs_status_t UcxEndpoint::on_same_host_confirm_am(const void* header, size_t header_length,
                                                  size_t length, const ucp_am_recv_param_t* param) {
  if (failed_) return UCS_OK;
  auto token = decode_same_host_confirm({static_cast<const uint8_t*>(header), header_length});
  Status st = token.status();
  if (st.is_ok() && (length != 0 || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0))
    st = protocol_error("a same-host confirmation carries data");
  auto read = st.is_ok() ? same_host_read_.find(*token) : same_host_read_.end();
  if (st.is_ok() && read == same_host_read_.end())
    st = protocol_error(fmt::format("same-host confirmation for unknown token {}", *token));
  if (!st.is_ok()) {
    fail(st.with_context("malformed same-host confirmation from " + peer_));
    return UCS_OK;
  }
  ReceivedFrame frame = std::move(read->second);
  same_host_read_.erase(read);
  deliver(std::move(frame));
  return UCS_OK;
}

void UcxEndpoint::send_same_host_reply(const SameHostReply& reply) {
  auto owned = std::make_unique<ControlOp>();
  ControlOp* op = owned.get();
  op->ep = std::static_pointer_cast<UcxEndpoint>(shared_from_this());
  op->header = encode_same_host_reply(reply);
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  param.cb.send = control_cb;
  param.user_data = op;
  param.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  ucs_status_ptr_t r = ucp_am_send_nbx(ep_, kAmSameHostReply, op->header.data(), op->header.size(),
                                       nullptr, 0, &param);
  if (r == nullptr) return;  // sent; `owned` frees it
  if (UCS_PTR_IS_ERR(r)) {
    // The endpoint is failing: its error handler reports it; the sender's send ends with it.
    return;
  }
  controls_.emplace(op, std::move(owned));
}

Status UcxEndpoint::parse_frame(const FrameHeader& h, std::span<const uint8_t> prefix,
                                std::span<const uint8_t> metadata, size_t length,
                                ReceivedFrame& frame) {
  const Limits& limits = worker_.context->options().limits;
  std::string_view method(reinterpret_cast<const char*>(prefix.data() + kFrameHeaderSize),
                          h.method_len);
  HIVEMIND_RETURN_IF_ERROR(validate_method(method));
  HIVEMIND_RETURN_IF_ERROR(
      decode_descriptors(prefix.subspan(kFrameHeaderSize + h.method_len), h, limits, descriptors_));
  if (length != h.payload_len) return protocol_error("payload length mismatch");
  frame.header = h;
  frame.method.assign(method);
  frame.message.metadata.assign(metadata.begin(), metadata.end());
  return Status::ok();
}

ucs_status_t UcxEndpoint::process(const FrameHeader& h, std::span<const uint8_t> prefix,
                                  std::span<const uint8_t> metadata, void* data, size_t length,
                                  bool rndv) {
  recvs_started_last_ = false;
  ReceivedFrame frame;
  Status st = parse_frame(h, prefix, metadata, length, frame);
  if (!st.is_ok()) {
    fail(st.with_context("malformed frame from " + peer_));
    return UCS_OK;
  }
  auto buffers = allocate(h, frame, descriptors_);
  MemoryType dst_mem = MemoryType::kHost;
  Status refusal = buffers.status();
  if (refusal.is_ok()) {
    for (size_t i = 0; i < buffers->size(); ++i) {
      const Buffer& b = (*buffers)[i];
      if (b.size() == 0) continue;
      if (!b.is_host() && (!rndv || !worker_.context->ucx_supports_memory_type(b.memory_type()))) {
        refusal = unsupported_error("UCX cannot receive this frame into device memory here");
        break;
      }
      dst_mem = b.memory_type();
    }
  }
  if (!refusal.is_ok()) {
    // Refused: eager data is dropped with UCS_OK; for a rendezvous UCS_OK makes UCX tell the sender
    // it is done without moving the payload.
    frame.refused = refusal;
    deliver(std::move(frame));
    return UCS_OK;
  }
  frame.message.tensors = std::move(buffers).value();
  if (!rndv) {
    const auto* src = static_cast<const uint8_t*>(data);
    for (const auto& b : frame.message.tensors) {
      if (b.size() > 0) std::memcpy(b.data(), src, b.size());
      src += b.size();
    }
    deliver(std::move(frame));
    return UCS_OK;
  }
  auto owned_recv = std::make_unique<RecvOp>();
  RecvOp* op = owned_recv.get();
  op->ep = std::static_pointer_cast<UcxEndpoint>(shared_from_this());
  op->frame = std::move(frame);
  for (const auto& b : op->frame.message.tensors) {
    if (b.size() > 0) op->iov.push_back({b.data(), b.size()});
  }
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.recv_am = recv_cb;
  param.user_data = op;
  void* buffer = nullptr;
  size_t count = 0;
  if (op->iov.size() == 1) {
    buffer = op->iov[0].buffer;
    count = op->iov[0].length;
  } else if (!op->iov.empty()) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
    param.datatype = ucp_dt_make_iov();
    buffer = op->iov.data();
    count = op->iov.size();
  }
  if (dst_mem == MemoryType::kCuda) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMORY_TYPE;
    param.memory_type = UCS_MEMORY_TYPE_CUDA;
  }
  recvs_.emplace(op, std::move(owned_recv));
  recvs_started_last_ = true;
  ucs_status_ptr_t r = ucp_am_recv_data_nbx(ucx_.handle(), data, buffer, count, &param);
  if (r == nullptr) {
    recv_done(op, UCS_OK);
  } else if (UCS_PTR_IS_ERR(r)) {
    recv_done(op, UCS_PTR_STATUS(r));
  }
  return UCS_INPROGRESS;
}

void UcxEndpoint::recv_done(RecvOp* op, ucs_status_t status) {
  std::unique_ptr<RecvOp> done = std::move(recvs_.extract(op).mapped());
  if (status == UCS_OK) {
    deliver(std::move(done->frame));
  } else if (!failed_) {
    fail(ucs_to_status(status, "receive from " + peer_));
  }
}

void UcxEndpoint::on_peer_error(ucs_status_t status) {
  Status st =
      ucs_to_status(status, established_ ? "connection to " + peer_ : "connect to " + peer_);
  if (!established_ && st.code() == StatusCode::kPeerClosed) st = unavailable_error(st.message());
  fail(st);
}

void UcxEndpoint::on_failed(const Status& status) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  // Frames read but never confirmed are dropped: their memory may have been reused meanwhile.
  same_host_read_.clear();
  // Sends awaiting a same-host reply that will not come now end with the endpoint's error (their
  // frame's own active message, if UCX still holds it, completes as the endpoint closes).
  std::vector<SendOp*> awaiting;
  for (const auto& [token, op] : same_host_sends_)
    awaiting.push_back(op);
  same_host_sends_.clear();
  for (SendOp* op : awaiting) {
    op->awaiting_same_host_reply = false;
    send_done(op, UCS_ERR_CONNECTION_RESET);
  }
  for (auto& [seq, held] : held_) {
    if (held.rndv) ucp_am_data_release(ucx_.handle(), held.data);
  }
  held_.clear();
  split_metadata_.clear();
  if (ep_ != nullptr) {
    // A local close (kCanceled) disconnects gracefully; a failed endpoint is closed by force. The
    // registry keeps this object alive until UCX is done with the handle.
    ucx_.registry().close(ep_, status.code() == StatusCode::kCanceled ? UcxCloseMode::kGraceful
                                                                      : UcxCloseMode::kForce);
    ep_ = nullptr;
  }
}

std::vector<std::string> UcxEndpoint::lanes() const {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  // UCX 1.13 has no query for an endpoint's transports; its printed configuration lists each lane
  // as "lane[1]:  2:posix/memory.0 md[1] -> ...". Collect the "<transport>/<device>" of every lane.
  std::vector<std::string> out;
  if (ep_ == nullptr) return out;
  char* text = nullptr;
  size_t size = 0;
  FILE* stream = ::open_memstream(&text, &size);
  if (stream == nullptr) return out;
  ::ucp_ep_print_info(ep_, stream);
  std::fclose(stream);
  std::string info(text, size);
  std::free(text);
  std::set<std::string> seen;
  for (size_t at = info.find("lane["); at != std::string::npos; at = info.find("lane[", at + 1)) {
    const size_t end = info.find('\n', at);
    const std::string line =
        info.substr(at, end == std::string::npos ? std::string::npos : end - at);
    // The first "<digits>:<name>/<device>.<index>" token of the line.
    const size_t colon = line.find("]:");
    if (colon == std::string::npos) continue;
    std::string token;
    for (size_t i = colon + 2; i < line.size(); ++i) {
      if (line[i] == ' ') {
        if (!token.empty()) break;
        continue;
      }
      token += line[i];
    }
    const size_t index_colon = token.find(':'), slash = token.find('/'), dot = token.rfind('.');
    if (index_colon == std::string::npos || slash == std::string::npos ||
        dot == std::string::npos || dot < slash) {
      continue;  // a connection-manager lane ("cm rdmacm") carries no data
    }
    std::string lane = token.substr(index_colon + 1, dot - index_colon - 1);
    if (seen.insert(lane).second) out.push_back(std::move(lane));
  }
  if (same_host_used_) out.push_back(std::string(kSameHostCopyLane));
  return out;
}

}  // namespace hivemind::transport
