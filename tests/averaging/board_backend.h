// BoardBackend: a test-only Backend for averagers living in one process. Members of a round post
// a copy of their float32 tensors on a shared board and wait (with the deadline) until every member
// of the group posted; each then writes the mean into its own tensors. It records every Group it
// got, and a hook can hold a member inside its round (a member that stalls mid-round).
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <hivemind/averaging/backend.h>

namespace hivemind::averaging::testing {

class Board {
 public:
  // Posts `member`'s copy for round (key, round) and waits for all `size` posts: their sum, or
  // nullopt at the deadline.
  std::optional<std::vector<std::vector<double>>> exchange(const Group& group,
                                                           std::vector<std::vector<float>> mine,
                                                           Deadline deadline) {
    std::unique_lock lock(mutex_);
    auto& posts = rounds_[{group.key, group.round}];
    posts[group.members[group.self].endpoint] = std::move(mine);
    changed_.notify_all();
    if (!changed_.wait_until(lock, deadline.at(), [&] { return posts.size() >= group.size(); }))
      return std::nullopt;
    std::vector<std::vector<double>> sums;
    for (const auto& [endpoint, tensors] : posts) {
      sums.resize(tensors.size());
      for (size_t t = 0; t < tensors.size(); ++t) {
        sums[t].resize(tensors[t].size());
        for (size_t i = 0; i < tensors[t].size(); ++i)
          sums[t][i] += tensors[t][i];
      }
    }
    return sums;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::pair<std::string, uint64_t>, std::map<std::string, std::vector<std::vector<float>>>>
      rounds_;
};

class BoardBackend final : public Backend {
 public:
  explicit BoardBackend(std::shared_ptr<Board> board, std::string name = "transport")
      : board_(std::move(board)), name_(std::move(name)) {}

  std::string_view name() const override { return name_; }
  bool usable_for(std::span<const TensorRef>, std::string& device) const override {
    device = device_id;
    return true;
  }
  Result<std::vector<uint8_t>> leader_setup(const Group& group) override {
    return std::vector<uint8_t>{static_cast<uint8_t>(group.size())};
  }
  Status all_reduce_mean(const Group& group, std::span<const TensorRef> tensors, Deadline deadline,
                         RoundReport& report) override {
    {
      std::lock_guard lock(mutex_);
      groups_.push_back(group);
    }
    if (in_round) in_round(group);
    if (fail_with) return *fail_with;
    std::vector<std::vector<float>> mine;
    for (const auto& t : tensors) {
      const auto* data = static_cast<const float*>(t.data);
      mine.emplace_back(data, data + t.elements);
    }
    auto sums = board_->exchange(group, std::move(mine), deadline);
    if (!sums) {
      return timeout_error(fmt::format("board: round {} incomplete at the deadline", group.round));
    }
    for (size_t t = 0; t < tensors.size(); ++t) {
      auto* data = static_cast<float*>(tensors[t].data);
      for (size_t i = 0; i < tensors[t].elements; ++i)
        data[i] = static_cast<float>((*sums)[t][i] / static_cast<double>(group.size()));
    }
    report.bytes_sent += total_bytes(tensors);
    return Status::ok();
  }

  std::vector<Group> groups() const {
    std::lock_guard lock(mutex_);
    return groups_;
  }

  // Runs at the start of every round (on the averager's thread): a test may block it there.
  std::function<void(const Group&)> in_round;
  // What usable_for reports as this member's device (NCCL-like backends need distinct ones).
  std::string device_id;
  // When set, every round fails with it (a backend that broke, e.g. NCCL).
  std::optional<Status> fail_with;

 private:
  std::shared_ptr<Board> board_;
  std::string name_;
  mutable std::mutex mutex_;
  std::vector<Group> groups_;
};

}  // namespace hivemind::averaging::testing
