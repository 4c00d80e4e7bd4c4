#include "tcp/tcp_endpoint.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hivemind/common/errno_text.h>

namespace hivemind::transport {
namespace {
constexpr size_t kInboxSize = 64 * 1024;
constexpr int kMaxIov = 64;  // per syscall; IOV_MAX is 1024 but 64 covers many queued frames
}  // namespace

TcpEndpoint::TcpEndpoint(Worker::Impl& worker, int fd, std::string peer, bool connecting)
    : EndpointBase(worker, std::move(peer)), fd_(fd), connecting_(connecting) {
  inbox_.resize(kInboxSize);
}

TcpEndpoint::~TcpEndpoint() {
  if (fd_ >= 0) ::close(fd_);
}

bool TcpEndpoint::start() {
  // Edge-triggered with both directions on: no epoll_ctl churn as the send queue fills and drains.
  token_ = worker_.add_fd(fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this);
  if (token_ == 0) {
    fail(errno_error("epoll_ctl", errno));
    return false;
  }
  return true;
}

void TcpEndpoint::send_on_loop(OutgoingFrame frame, SendCallback done) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  for (const auto& t : frame.message.tensors) {
    if (!t.is_host()) {
      complete_send(done, unsupported_error("the TCP backend sends host memory only; stage device "
                                            "tensors first (transport/staging.h)"));
      return;
    }
  }
  SendOp op;
  FrameHeader h;
  h.kind = frame.kind;
  h.request_id = frame.request_id;
  h.status = static_cast<uint16_t>(frame.status);
  h.method_len = static_cast<uint16_t>(frame.method.size());
  h.metadata_len = static_cast<uint32_t>(frame.message.metadata.size());
  h.tensor_count = static_cast<uint32_t>(frame.message.tensors.size());
  std::vector<TensorDescriptor> descs;
  descs.reserve(frame.message.tensors.size());
  for (const auto& t : frame.message.tensors) {
    descs.push_back({t.size(), t.memory_type()});
    h.payload_len += t.size();
  }
  op.prefix.resize(h.prefix_len());
  encode_prefix(h, frame.method, descs, op.prefix);
  op.message = std::move(frame.message);
  op.iov.reserve(2 + op.message.tensors.size());
  op.iov.push_back({op.prefix.data(), op.prefix.size()});
  if (!op.message.metadata.empty()) {
    op.iov.push_back({op.message.metadata.data(), op.message.metadata.size()});
  }
  for (const auto& t : op.message.tensors) {
    if (t.size() > 0) op.iov.push_back({t.data(), t.size()});
  }
  op.done = std::move(done);
  bool was_empty = sendq_.empty();
  sendq_.push_back(std::move(op));
  if (was_empty && !connecting_) flush();
}

void TcpEndpoint::flush() {
  while (!sendq_.empty() && !failed_) {
    iovec iov[kMaxIov];
    int count = 0;
    for (auto& op : sendq_) {
      for (size_t i = op.next; i < op.iov.size() && count < kMaxIov; ++i)
        iov[count++] = op.iov[i];
      if (count == kMaxIov) break;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // EPOLLOUT (edge) resumes us
      fail_from_errno("send", errno);
      return;
    }
    size_t left = static_cast<size_t>(n);
    while (!sendq_.empty()) {
      SendOp& op = sendq_.front();
      while (op.next < op.iov.size() && left > 0) {
        iovec& seg = op.iov[op.next];
        size_t take = std::min(left, seg.iov_len);
        seg.iov_base = static_cast<uint8_t*>(seg.iov_base) + take;
        seg.iov_len -= take;
        left -= take;
        if (seg.iov_len == 0) ++op.next;
      }
      if (op.next < op.iov.size()) break;
      complete_send(op.done, Status::ok());
      sendq_.pop_front();
    }
  }
}

void TcpEndpoint::on_fd_events(uint32_t events) {
  auto self = shared_from_this();  // a failure below may drop the worker's reference
  if (connecting_) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fail(unavailable_error(fmt::format("connect to {}: {}", peer_, errno_text(err))));
      return;
    }
    connecting_ = false;
    flush();
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) read_some();
  if (!failed_ && (events & EPOLLOUT) != 0) flush();
  if (!failed_ && (events & EPOLLERR) != 0) {
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    fail_from_errno("socket", err != 0 ? err : ECONNRESET);
  }
}

void TcpEndpoint::fail_from_errno(const char* what, int err) {
  if (err == ECONNRESET || err == EPIPE || err == ENOTCONN || err == ETIMEDOUT) {
    fail(peer_closed_error(fmt::format("{} to {}: {}", what, peer_, errno_text(err))));
  } else {
    fail(errno_error(fmt::format("{} to {}", what, peer_), err));
  }
}

// Makes at least `need` bytes available in the inbox; false when the socket has no more for now
// (or the endpoint failed).
bool TcpEndpoint::fill_inbox(size_t need) {
  while (in_end_ - in_begin_ < need) {
    if (in_begin_ > 0 && inbox_.size() - in_begin_ < need) {
      std::memmove(inbox_.data(), inbox_.data() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    if (inbox_.size() < need) inbox_.resize(need);  // need is bounded by the validated limits
    ssize_t n = ::read(fd_, inbox_.data() + in_end_, inbox_.size() - in_end_);
    if (n > 0) {
      in_end_ += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      bool idle = state_ == RxState::kHeader && in_end_ == in_begin_;
      fail(peer_closed_error(
          fmt::format("{} closed the connection{}", peer_, idle ? "" : " mid-frame")));
      return false;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) fail_from_errno("read", errno);
    return false;
  }
  return true;
}

void TcpEndpoint::read_some() {
  auto self = shared_from_this();
  while (!failed_) {
    switch (state_) {
      case RxState::kHeader: {
        if (!fill_inbox(kFrameHeaderSize)) return;
        auto decoded = decode_header({inbox_.data() + in_begin_, kFrameHeaderSize},
                                     worker_.context->options().limits);
        if (!decoded.is_ok()) {
          fail(decoded.status().with_context(fmt::format("malformed frame from {}", peer_)));
          return;
        }
        header_ = *decoded;
        if ((header_.flags & kFrameFlagSplitMetadata) != 0) {
          fail(protocol_error(
              fmt::format("malformed frame from {}: split metadata over TCP", peer_)));
          return;
        }
        // Before the swarm handshake: nothing beyond a small frame is read. The frame stays
        // unread; the endpoint fails once the authenticator has answered it.
        if (!admit_header(header_)) return;
        state_ = RxState::kPrefix;
        break;
      }
      case RxState::kPrefix:
        if (!fill_inbox(header_.prefix_and_metadata_len())) return;
        process_prefix();
        break;
      case RxState::kPayload:
      case RxState::kDiscard: {
        size_t avail = in_end_ - in_begin_;
        if (avail > 0) {
          size_t before = in_begin_;
          consume_payload(inbox_.data() + in_begin_, avail);
          (void)before;
          break;
        }
        in_begin_ = in_end_ = 0;
        if (state_ == RxState::kDiscard) {
          if (!fill_inbox(1)) return;
          break;
        }
        // Straight into the destination buffers, with the inbox last so the next frame's first
        // bytes come in the same syscall.
        iovec iov[kMaxIov];
        int count = 0;
        auto& dst = current_.message.tensors;
        for (size_t i = dst_index_; i < dst.size() && count < kMaxIov - 1; ++i) {
          size_t off = i == dst_index_ ? dst_offset_ : 0;
          if (dst[i].size() - off == 0) continue;
          iov[count++] = {static_cast<uint8_t*>(dst[i].data()) + off, dst[i].size() - off};
        }
        size_t direct = 0;
        for (int i = 0; i < count; ++i)
          direct += iov[i].iov_len;
        iov[count++] = {inbox_.data(), inbox_.size()};
        ssize_t n = ::readv(fd_, iov, count);
        if (n == 0) {
          fail(peer_closed_error(fmt::format("{} closed the connection mid-frame", peer_)));
          return;
        }
        if (n < 0) {
          if (errno == EINTR) break;
          if (errno != EAGAIN && errno != EWOULDBLOCK) fail_from_errno("read", errno);
          return;
        }
        size_t got = static_cast<size_t>(n);
        size_t into_dst = std::min(got, direct);
        // Advance over what landed in place (no copy), then the rest sits in the inbox.
        size_t left = into_dst;
        while (left > 0) {
          size_t room = dst[dst_index_].size() - dst_offset_;
          size_t take = std::min(room, left);
          dst_offset_ += take;
          left -= take;
          if (dst_offset_ == dst[dst_index_].size()) {
            ++dst_index_;
            dst_offset_ = 0;
          }
        }
        while (dst_index_ < dst.size() && dst[dst_index_].size() == 0)
          ++dst_index_;
        in_end_ = got - into_dst;
        if (dst_index_ == dst.size()) finish_frame();
        break;
      }
    }
  }
}

void TcpEndpoint::process_prefix() {
  const Limits& limits = worker_.context->options().limits;
  const uint8_t* p = inbox_.data() + in_begin_ + kFrameHeaderSize;
  std::string_view method(reinterpret_cast<const char*>(p), header_.method_len);
  Status st = validate_method(method);
  if (st.is_ok()) {
    st = decode_descriptors(
        {p + header_.method_len, size_t{header_.tensor_count} * kTensorDescriptorSize}, header_,
        limits, descriptors_);
  }
  if (!st.is_ok()) {
    fail(st.with_context(fmt::format("malformed frame from {}", peer_)));
    return;
  }
  const uint8_t* meta =
      p + header_.method_len + size_t{header_.tensor_count} * kTensorDescriptorSize;
  current_ = ReceivedFrame{};
  current_.header = header_;
  current_.method.assign(method);
  current_.message.metadata.assign(meta, meta + header_.metadata_len);
  in_begin_ += header_.prefix_and_metadata_len();

  auto buffers = allocate(header_, current_, descriptors_);
  Status refusal = buffers.status();
  if (refusal.is_ok()) {
    for (const auto& b : *buffers) {
      if (!b.is_host() && b.size() > 0) {
        refusal = unsupported_error("the TCP backend receives into host memory only");
        break;
      }
    }
  }
  dst_index_ = 0;
  dst_offset_ = 0;
  if (!refusal.is_ok()) {
    // Refused: read and drop the payload so the stream stays in step; the frame is still delivered
    // (with `refused` set) so the rpc layer can answer it.
    current_.refused = refusal;
    discard_left_ = header_.payload_len;
    state_ = RxState::kDiscard;
    if (discard_left_ == 0) finish_frame();
    return;
  }
  current_.message.tensors = std::move(buffers).value();
  state_ = RxState::kPayload;
  while (dst_index_ < current_.message.tensors.size() &&
         current_.message.tensors[dst_index_].size() == 0) {
    ++dst_index_;
  }
  if (dst_index_ == current_.message.tensors.size()) finish_frame();
}

void TcpEndpoint::consume_payload(const uint8_t* data, size_t n) {
  if (state_ == RxState::kDiscard) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(n, discard_left_));
    in_begin_ += take;
    discard_left_ -= take;
    if (discard_left_ == 0) finish_frame();
    return;
  }
  auto& dst = current_.message.tensors;
  while (n > 0 && dst_index_ < dst.size()) {
    size_t room = dst[dst_index_].size() - dst_offset_;
    size_t take = std::min(room, n);
    std::memcpy(static_cast<uint8_t*>(dst[dst_index_].data()) + dst_offset_, data, take);
    data += take;
    n -= take;
    in_begin_ += take;
    dst_offset_ += take;
    if (dst_offset_ == dst[dst_index_].size()) {
      ++dst_index_;
      dst_offset_ = 0;
    }
  }
  while (dst_index_ < dst.size() && dst[dst_index_].size() == 0)
    ++dst_index_;
  if (dst_index_ == dst.size()) finish_frame();
}

void TcpEndpoint::finish_frame() {
  state_ = RxState::kHeader;
  if (current_.refused.is_ok() == false) current_.message.tensors.clear();
  deliver(std::move(current_));
  current_ = ReceivedFrame{};
  if (in_begin_ == in_end_) in_begin_ = in_end_ = 0;
}

void TcpEndpoint::on_failed(const Status& status) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  if (token_ != 0) worker_.remove_fd(fd_, token_);
  token_ = 0;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  for (auto& op : sendq_)
    complete_send(op.done, status);
  sendq_.clear();
  current_ = ReceivedFrame{};
}

}  // namespace hivemind::transport
