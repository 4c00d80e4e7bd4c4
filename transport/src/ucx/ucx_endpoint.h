// UCX backend internals (private): context, worker, endpoint, listener.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include <ucp/api/ucp.h>

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
  std::unordered_map<SendOp*, std::unique_ptr<SendOp>> sends_;
  std::unordered_map<RecvOp*, std::unique_ptr<RecvOp>> recvs_;
  std::vector<TensorDescriptor> descriptors_;
};

struct UcxEndpoint::SendOp {
  std::shared_ptr<UcxEndpoint> ep;
  std::vector<uint8_t> header;           // UCX 1.13 has no COPY_HEADER: must live until completion
  std::vector<uint8_t> metadata_header;  // split metadata AM: its 8-byte sequence number
  Message message;
  std::vector<ucp_dt_iov_t> iov;
  SendCallback done;
  int outstanding = 0;
  Status status;
};

struct UcxEndpoint::RecvOp {
  std::shared_ptr<UcxEndpoint> ep;
  ReceivedFrame frame;
  std::vector<ucp_dt_iov_t> iov;
};

}  // namespace hivemind::transport
