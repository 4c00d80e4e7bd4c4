// One TCP connection carrying frames (private).
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include <sys/uio.h>

#include "endpoint_base.h"

namespace hivemind::transport {

class TcpEndpoint final : public EndpointBase, public FdHandler {
 public:
  TcpEndpoint(Worker::Impl& worker, int fd, std::string peer, bool connecting);
  ~TcpEndpoint() override;

  // Registers the socket with epoll; false when that fails (the endpoint is then failed).
  bool start();
  std::string_view backend() const override { return "tcp"; }
  void on_fd_events(uint32_t events) override;

 private:
  struct SendOp {
    std::vector<uint8_t> prefix;  // header + method + descriptors
    Message message;              // keeps metadata and tensors alive until written
    std::vector<iovec> iov;       // [prefix, metadata, tensors...], empty segments left out
    size_t next = 0;              // first segment not fully written (it is advanced in place)
    SendCallback done;
  };
  enum class RxState { kHeader, kPrefix, kPayload, kDiscard };

  void send_on_loop(OutgoingFrame frame, SendCallback done) override;
  void on_failed(const Status& status) override;

  void flush();
  void read_some();
  void process_prefix();
  void finish_frame();
  void consume_payload(const uint8_t* data, size_t n);
  bool fill_inbox(size_t need);
  void fail_from_errno(const char* what, int err);

  int fd_;
  uint64_t token_ = 0;
  bool connecting_;

  std::deque<SendOp> sendq_;

  std::vector<uint8_t> inbox_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  RxState state_ = RxState::kHeader;
  FrameHeader header_;
  std::vector<TensorDescriptor> descriptors_;
  ReceivedFrame current_;
  size_t dst_index_ = 0;
  size_t dst_offset_ = 0;
  uint64_t discard_left_ = 0;
};

}  // namespace hivemind::transport
