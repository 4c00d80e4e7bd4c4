// The UCX backend's entry points (private). The implementation lives in ucx_worker.cc when the
// build has UCX, and in ucx_disabled.cc (which reports kUnsupported) when it does not.
#pragma once

#include <memory>
#include <string>

#include <hivemind/transport/address.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/listener.h>

#include "worker_impl.h"

namespace hivemind::transport {

namespace detail {
// ucp_init with the Context's ucx_config applied through ucp_config_modify.
Result<std::shared_ptr<UcxContext>> create_ucx_context(const ContextOptions& options);
bool ucx_supports(const UcxContext* context, MemoryType type);
std::string ucx_version();
// Whether this UCX can put shared memory on peer-failure endpoints without crashing (>= 1.14).
bool ucx_shared_memory_with_error_handling_is_safe();
}  // namespace detail

// One ucp_worker per Worker, progressed by the Worker's loop.
class UcxWorker {
 public:
  static Result<std::unique_ptr<UcxWorker>> create(Worker::Impl& worker);
  virtual ~UcxWorker() = default;
  virtual Result<std::shared_ptr<Endpoint>> connect(const Address& address,
                                                    EndpointCallbacks callbacks) = 0;
  virtual Result<std::shared_ptr<Listener>> listen(const Address& address,
                                                   AcceptCallback on_accept) = 0;
  // Closes what is left and waits (bounded) for UCX to finish; the I/O thread at worker stop.
  virtual void shutdown() = 0;
};

}  // namespace hivemind::transport
