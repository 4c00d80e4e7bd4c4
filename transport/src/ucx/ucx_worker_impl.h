// The UCX worker of one Worker (private).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "ucx/ucx_endpoint.h"
#include "ucx/ucx_endpoint_registry.h"

namespace hivemind::transport {

class UcxWorkerImpl final : public UcxWorker, public Poller, public FdHandler {
 public:
  explicit UcxWorkerImpl(Worker::Impl& worker);
  ~UcxWorkerImpl() override;
  Status init();

  Result<std::shared_ptr<Endpoint>> connect(const Address& address,
                                            EndpointCallbacks callbacks) override;
  Result<std::shared_ptr<Listener>> listen(const Address& address,
                                           AcceptCallback on_accept) override;
  void shutdown() override;

  bool progress() override;
  bool arm() override;
  void on_fd_events(uint32_t) override {}  // the loop progresses UCX after every wakeup anyway
  bool wake_only() const override { return true; }

  ucp_worker_h handle() const { return handle_; }
  size_t am_header_budget() const { return am_header_budget_; }
  Worker::Impl& worker() { return worker_; }

  // The owner of every endpoint of this worker, from creation until UCX finished closing it.
  UcxEndpointRegistry& registry() { return registry_; }

  Result<std::shared_ptr<UcxEndpoint>> create_endpoint(
      const std::string& peer, const std::function<void(ucp_ep_params_t&)>& fill);
  ucs_status_t dispatch_am(unsigned id, const void* header, size_t header_length, void* data,
                           size_t length, const ucp_am_recv_param_t* param);
  void on_ep_error(ucp_ep_h handle, ucs_status_t status);
  // Keeps a closed listener's ucp_listener alive (rejecting requests) until the worker shuts down.
  void retire_listener(std::shared_ptr<ListenerBase> listener);
  bool shutting_down() const { return shut_down_; }

 private:
  Worker::Impl& worker_;
  ucp_worker_h handle_ = nullptr;
  int efd_ = -1;
  uint64_t token_ = 0;
  size_t max_am_header_ = 0;
  size_t am_header_budget_ = 0;
  bool shut_down_ = false;
  UcxEndpointRegistry registry_{worker_};
  std::vector<std::shared_ptr<ListenerBase>> retired_listeners_;
};

}  // namespace hivemind::transport
