// Endpoint: one ordered, reliable connection that moves frames. Backends: tcp, ucx.
//
// Rules every backend keeps (tests check them over each backend):
//  - every send's callback runs exactly once, on the I/O thread, never inline from send(), and only
//    when the transport no longer touches the tensors' memory;
//  - the first error is sticky: it fails every pending and later send with that error and is
//    reported once through on_error; frames read in full before it are delivered before it, none
//    after it, and none once the owner called close();
//  - a frame's destination buffers come from `allocate`, called after the header, descriptors and
//    metadata arrived and were validated, before any payload byte lands;
//  - frames are delivered whole. TCP delivers them in send order; UCX in completion order (a
//    rendezvous frame can be overtaken by later small ones), so callers must not rely on order.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/transport/frame.h>
#include <hivemind/transport/message.h>

namespace hivemind::transport {

struct OutgoingFrame {
  FrameKind kind = FrameKind::kMessage;
  uint64_t request_id = 0;
  StatusCode status = StatusCode::kOk;  // kError frames only
  std::string method;
  Message message;
};

struct ReceivedFrame {
  FrameHeader header;
  std::string method;
  Message message;
  // Not ok when the allocator refused the frame: its payload was discarded, metadata is kept.
  Status refused;
};

using FrameAllocator =
    std::function<Result<std::vector<Buffer>>(const FrameHeader&, const IncomingFrame&)>;

// All run on the I/O thread and must not block.
struct EndpointCallbacks {
  FrameAllocator allocate;                      // null: host memory for every tensor
  std::function<void(ReceivedFrame)> on_frame;  // a complete frame
  std::function<void(const Status&)> on_error;  // the sticky error, once
};

using SendCallback = std::function<void(Status)>;

class Endpoint {
 public:
  virtual ~Endpoint() = default;

  // Thread-safe. `done` runs exactly once on the I/O thread.
  virtual void send(OutgoingFrame frame, SendCallback done) = 0;
  // Thread-safe, idempotent: fails pending sends with kCanceled and reports kCanceled to on_error.
  virtual void close() = 0;
  // The sticky error; ok while the endpoint is healthy. Thread-safe.
  virtual Status error() const = 0;
  virtual std::string peer_address() const = 0;
  virtual std::string_view backend() const = 0;  // "tcp" or "ucx"
  // The transports that carry this endpoint's data, for diagnostics and tests: {"tcp"} for the TCP
  // backend; for UCX the "<transport>/<device>" of each lane once connected ("posix/memory",
  // "tcp/lo"), plus "same-host-copy" once a payload was read straight from the sender's memory
  // (same_host_copy.h). I/O thread only (run it through Worker::run_sync).
  virtual std::vector<std::string> lanes() const { return {std::string(backend())}; }
};

}  // namespace hivemind::transport
