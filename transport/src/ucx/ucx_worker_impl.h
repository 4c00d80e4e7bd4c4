// The UCX worker of one Worker (private).
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ucx/ucx_endpoint.h"

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

  Result<std::shared_ptr<UcxEndpoint>> create_endpoint(
      const std::string& peer, const std::function<void(ucp_ep_params_t&)>& fill);
  ucs_status_t dispatch_am(unsigned id, const void* header, size_t header_length, void* data,
                           size_t length, const ucp_am_recv_param_t* param);
  void on_ep_error(ucp_ep_h handle, ucs_status_t status);
  void forget(ucp_ep_h handle);
  // ucp_ep_close_nbx; keeps the endpoint object alive until UCX is done with it. A local close
  // flushes and disconnects gracefully (the peer sees a clean disconnect); a failed endpoint is
  // forced.
  void close_ep(ucp_ep_h handle, std::shared_ptr<UcxEndpoint> keep_alive, bool force);
  void close_done(void* request);
  // A local close: flush (completes once wireup is done), then a graceful close.
  void flush_then_close(ucp_ep_h handle, std::shared_ptr<UcxEndpoint> keep_alive);
  void finish_flush(void* op, ucs_status_t status);
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
  std::unordered_map<ucp_ep_h, UcxEndpoint*> eps_;
  std::unordered_map<void*, std::shared_ptr<UcxEndpoint>> closing_;
  std::unordered_set<void*> flushing_;
  std::vector<std::shared_ptr<ListenerBase>> retired_listeners_;
};

}  // namespace hivemind::transport
