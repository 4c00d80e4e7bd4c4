// UCX backend internals (private): context, worker, endpoint, listener.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include <ucp/api/ucp.h>

#include <hivemind/transport/same_host_copy.h>

#include "endpoint_base.h"
#include "ucx/ucx_backend.h"

namespace hivemind::transport {

namespace detail {
struct UcxContext {
  ucp_context_h handle = nullptr;
  uint64_t memory_types = 0;
  ~UcxContext() {
    if (handle != nullptr) ucp_cleanup(handle);
  }
};
}  // namespace detail

inline constexpr unsigned kAmFrame = 17;  // one frame: header = prefix (+ metadata), data = tensors
inline constexpr unsigned kAmMetadata = 18;  // metadata too large for the frame's AM header
// Same-host copy (same_host_copy.h): a frame whose payload the receiver reads from the sender's
// memory (header = prefix + metadata + trailer, no data), the receiver's reply, and the sender's
// confirmation that the memory was still the message's.
inline constexpr unsigned kAmSameHostFrame = 19;
inline constexpr unsigned kAmSameHostReply = 20;
inline constexpr unsigned kAmSameHostConfirm = 21;

Status ucs_to_status(ucs_status_t status, const std::string& what);

class UcxWorkerImpl;

class UcxEndpoint final : public EndpointBase {
 public:
  UcxEndpoint(Worker::Impl& worker, UcxWorkerImpl& ucx, std::string peer);
  ~UcxEndpoint() override;
  std::string_view backend() const override { return "ucx"; }
  std::vector<std::string> lanes() const override;

  void attach(ucp_ep_h ep) { ep_ = ep; }
  ucp_ep_h handle() const { return ep_; }

  ucs_status_t on_frame_am(const void* header, size_t header_length, void* data, size_t length,
                           const ucp_am_recv_param_t* param);
  ucs_status_t on_metadata_am(const void* header, size_t header_length, void* data, size_t length,
                              const ucp_am_recv_param_t* param);
  ucs_status_t on_same_host_frame_am(const void* header, size_t header_length, size_t length,
                                     const ucp_am_recv_param_t* param);
  ucs_status_t on_same_host_reply_am(const void* header, size_t header_length, size_t length,
                                     const ucp_am_recv_param_t* param);
  ucs_status_t on_same_host_confirm_am(const void* header, size_t header_length, size_t length,
                                       const ucp_am_recv_param_t* param);
  void on_peer_error(ucs_status_t status);
  void mark_established() { established_ = true; }

  // One send or rendezvous receive in flight. The endpoint owns it (sends_, recvs_); UCX holds its
  // address as the request's user_data until the completion callback.
  struct SendOp;
  struct RecvOp;
  void send_done(SendOp* op, ucs_status_t status);
  void recv_done(RecvOp* op, ucs_status_t status);
  // Worker shutdown: completes, with kCanceled, every send UCX will never complete now (its
  // requests die with the worker), so each callback still fires exactly once.
  void cancel_unfinished_sends();
  // A reply of the receiver side (same-host copy): its header lives here until UCX is done.
  struct ControlOp;
  void control_done(ControlOp* op);

 private:
  struct HeldFrame {
    std::vector<uint8_t> prefix;  // header + method + descriptors
    FrameHeader header;
    void* data = nullptr;        // rndv descriptor (kept with UCS_INPROGRESS)
    std::vector<uint8_t> eager;  // or a copy of eager data
    size_t length = 0;
    bool rndv = false;
  };

  void send_on_loop(OutgoingFrame frame, SendCallback done) override;
  void on_failed(const Status& status) override;
  // One active message of `op`; counted in op->outstanding until its callback.
  void issue(SendOp* op, unsigned id, const void* header, size_t header_len, const void* buffer,
             size_t count, bool iov, uint32_t flags, MemoryType mem);
  // The frame's payload the ordinary way (eager or UCX rendezvous), header = op->header.
  void issue_frame(SendOp* op, uint64_t payload_len, MemoryType mem);
  void send_same_host_reply(const SameHostReply& reply);
  // Validates a frame's method, descriptors and payload length into `frame` (before allocating).
  Status parse_frame(const FrameHeader& h, std::span<const uint8_t> prefix,
                     std::span<const uint8_t> metadata, size_t length, ReceivedFrame& frame);
  // Validates the prefix, allocates, then copies (eager) or starts the rendezvous receive.
  ucs_status_t process(const FrameHeader& header, std::span<const uint8_t> prefix,
                       std::span<const uint8_t> metadata, void* data, size_t length, bool rndv);

  UcxWorkerImpl& ucx_;
  ucp_ep_h ep_ = nullptr;
  bool established_ = false;
  bool recvs_started_last_ = false;  // process() started a rendezvous receive
  uint64_t next_split_seq_ = 1;
  std::unordered_map<uint64_t, std::vector<uint8_t>> split_metadata_;
  std::unordered_map<uint64_t, HeldFrame> held_;
  // Sends in flight, each at its `slot` (removal swaps the last one in); finished ops wait in
  // spare_sends_ with their buffers' capacity for the next send, so a small send allocates nothing
  // here (a malloc/free pair costs a noticeable part of an 8-byte hop).
  std::vector<std::unique_ptr<SendOp>> sends_;
  std::vector<std::unique_ptr<SendOp>> spare_sends_;
  static constexpr size_t kMaxSpareSends = 32;
  SendOp* new_send_op();
  std::unique_ptr<SendOp> take_send_op(SendOp* op);  // removes it from sends_
  void recycle_send_op(std::unique_ptr<SendOp> op);
  std::unordered_map<RecvOp*, std::unique_ptr<RecvOp>> recvs_;
  // Same-host copy. Sender: sends awaiting the receiver's reply, by token. Receiver: frames read
  // and awaiting the sender's confirmation; replies UCX still holds.
  uint64_t next_same_host_token_ = 1;
  bool same_host_unreachable_ = false;  // the peer could not read from us: stop offering
  bool same_host_used_ = false;         // a payload moved this way (lanes() says so)
  // The rendezvous threshold of host payloads: ucx_rndv_threshold until the lanes are known (the
  // first frame completed), then ucx_copy_lanes_rndv_threshold where every lane copies anyway.
  uint64_t host_rndv_threshold_ = 0;
  bool lanes_classified_ = false;
  uint64_t rndv_threshold(MemoryType mem);
  std::unordered_map<uint64_t, SendOp*> same_host_sends_;
  std::unordered_map<uint64_t, ReceivedFrame> same_host_read_;
  std::unordered_map<ControlOp*, std::unique_ptr<ControlOp>> controls_;
  std::vector<TensorDescriptor> descriptors_;
};

struct UcxEndpoint::SendOp {
  size_t slot = 0;  // index in sends_
  std::shared_ptr<UcxEndpoint> ep;
  std::vector<uint8_t> header;           // UCX 1.13 has no COPY_HEADER: must live until completion
  std::vector<uint8_t> metadata_header;  // split metadata AM: its 8-byte sequence number
  Message message;
  std::vector<ucp_dt_iov_t> iov;
  SendCallback done;
  int outstanding = 0;
  Status status;
  // Same-host copy: the prefix + metadata length within `header` (the trailer follows), whether
  // the receiver's reply is awaited (counted in outstanding), and the confirmation's bytes.
  size_t frame_header_len = 0;
  uint64_t same_host_token = 0;
  bool awaiting_same_host_reply = false;
  std::array<uint8_t, kSameHostConfirmBytes> confirm{};
};

struct UcxEndpoint::ControlOp {
  std::shared_ptr<UcxEndpoint> ep;
  std::array<uint8_t, kSameHostReplyBytes> header{};
};

struct UcxEndpoint::RecvOp {
  std::shared_ptr<UcxEndpoint> ep;
  ReceivedFrame frame;
  std::vector<ucp_dt_iov_t> iov;
};

}  // namespace hivemind::transport
