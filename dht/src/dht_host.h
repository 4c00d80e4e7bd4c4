// DhtHost: where a Dht's node lives and how a caller waits for it (private to the dht module).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include <hivemind/common/clock.h>
#include <hivemind/dht/node.h>

namespace hivemind::dht {

// Fired once from the node's thread; waited on by the caller.
class Signal {
 public:
  void fire() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fired_ = true;
    }
    cv_.notify_all();
  }
  bool fired() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return fired_;
  }
  bool wait_until(SteadyTime at) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (at == SteadyTime::max()) {
      cv_.wait(lock, [&] { return fired_; });
      return true;
    }
    return cv_.wait_until(lock, at, [&] { return fired_; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool fired_ = false;
};

class DhtHost {
 public:
  virtual ~DhtHost() = default;
  // Runs `fn` with the node on the node's thread (now or soon; never blocks on the node's thread).
  // False when the node is gone (stopped or killed); `fn` is then dropped.
  virtual bool run(std::function<void(Node&)> fn) = 0;
  // Waits until `signal` fired or `deadline` passed; true when it fired.
  virtual bool wait(Signal& signal, Deadline deadline) = 0;
  virtual const Clock& clock() const = 0;
  virtual std::string address() const = 0;
  virtual NodeId node_id() const = 0;
};

}  // namespace hivemind::dht
