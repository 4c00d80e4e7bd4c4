// ButterflyRound: one member's state for one transport round (reduce-scatter + all-gather).
//
// Two roles at once. As a sender it sends every chunk of every other member's part to that member
// and lands the replied means in staging. As the owner of its own part it sums the contributions
// in fp32 and answers each sender once all n contributions of a chunk arrived. The round is done
// when its own part is reduced and every chunk of the others' parts came back; it fails (once) on
// the first refusal, error reply, lost connection, mismatch, or the deadline.
//
// Threads: the caller's thread runs create/start/wait/finish; the I/O thread delivers
// contributions and replies. One mutex guards the mutable state; the summing of a chunk runs under
// it, on the I/O thread (the caller only waits meanwhile).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <hivemind/averaging/part_message.h>
#include <hivemind/averaging/transport_backend.h>
#include <hivemind/common/clock.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/responder.h>

#include "region_pool.h"
#include "tensor_layout.h"

namespace hivemind::averaging {

class ButterflyRound : public std::enable_shared_from_this<ButterflyRound> {
 public:
  // Sizes everything. This member's own values join its part's sums with each chunk's first
  // contribution (contribute()), read from the tensors, which stay untouched until commit().
  static Result<std::shared_ptr<ButterflyRound>> create(
      const Group& group, std::span<const TensorRef> tensors,
      const TransportBackendOptions& options, std::shared_ptr<transport::rpc::Client> client,
      Deadline deadline, RegionPool& staging_pool, RegionPool& sum_pool,
      std::shared_ptr<RegionPool> blocks);

  uint64_t key_hash() const { return key_hash_; }
  uint64_t group_hash() const { return group_hash_; }
  uint64_t round() const { return round_; }
  bool matches(const PartHeader& header) const {
    return header.key_hash == key_hash_ && header.group_hash == group_hash_ &&
           header.round == round_;
  }

  // Whether a contribution of this round may be received (checked before allocating): it must be
  // for this member's part, from another member, with the same codec, chunk length and tensors.
  // A refusal also fails the round (the sender is a member: without its part there is no mean).
  Status admit(const PartHeader& header);

  // A contribution to this member's part, received into `payload`. Replies at once with an error,
  // or later with the chunk's mean.
  void contribute(const PartHeader& header, std::vector<transport::Buffer> payload,
                  transport::rpc::Responder responder);

  // Sends this member's contributions to the other parts' owners.
  void start();
  // Blocks until the round is done or failed, or its deadline; then cancels what is left and
  // answers waiting senders. Returns the round's outcome; on success the means are in staging.
  Status wait_and_finish();
  // Fails the round (the first failure wins).
  void fail(Status why);

  // Writes the means into the tensors (only after wait_and_finish() succeeded).
  void commit() const;
  // Lets go of staging and sums (after wait_and_finish(), and commit() if any), so that their
  // regions return to the pools once in-flight replies are sent.
  void release_memory();

  uint64_t bytes_sent() const;
  uint64_t bytes_received() const;

 private:
  struct Waiting {
    PartHeader header;
    transport::rpc::Responder responder;
  };

  ButterflyRound() = default;

  // How long after the round's deadline its calls time out on their own (a backstop: the round
  // cancels them when it ends).
  static constexpr Milliseconds kCallDeadlineSlack{1000};
  Deadline call_deadline() const;
  std::string member_name(uint32_t index) const;
  Result<std::vector<transport::Buffer>> allocate_mean(const PartHeader& sent,
                                                       const transport::IncomingFrame& frame);
  void on_mean(const PartHeader& sent, uint64_t window_bytes, Result<transport::Message> reply);
  // Under mu_: the mean of own chunk `chunk` into staging, and the replies to its senders.
  void reduce_chunk_locked(uint64_t chunk);
  void check_done_locked();
  std::string missing_locked() const;

  // Fixed at creation.
  std::shared_ptr<transport::rpc::Client> client_;
  std::shared_ptr<RegionPool> blocks_;  // encodings and compressed replies
  TransportBackendOptions options_;
  Deadline deadline_ = Deadline::never();
  std::string key_;
  uint64_t key_hash_ = 0;
  uint64_t group_hash_ = 0;
  uint64_t round_ = 0;
  std::vector<std::string> endpoints_;
  uint32_t members_ = 0;
  uint32_t self_ = 0;
  std::optional<TensorLayout> layout_;
  ElementRange own_;
  uint64_t own_chunks_ = 0;

  mutable std::mutex mu_;
  std::shared_ptr<uint8_t> sum_region_;
  float* sum_ = nullptr;       // fp32 sums (then means) of this member's part, in sum_region_
  transport::Buffer staging_;  // raw: every tensor's mean, as TensorLayout places it
  // Compressed: every chunk's mean as its encodings (one per piece), decoded into the tensors by
  // commit(). Appended under mu_.
  struct EncodedMean {
    uint64_t offset = 0;
    uint64_t count = 0;
    std::vector<transport::Buffer> encodings;
  };
  std::vector<EncodedMean> encoded_means_;
  std::condition_variable changed_;  // done_, or room in the send window
  bool done_ = false;                // succeeded or failed
  Status failure_;
  std::vector<uint32_t> contributions_;  // per own chunk: members summed in so far (self included)
  std::vector<uint8_t> contributed_;     // [chunk * members + sender]: already summed
  std::vector<std::vector<Waiting>> waiting_;  // per own chunk: senders awaiting its mean
  uint64_t own_chunks_reduced_ = 0;
  std::vector<uint64_t> means_missing_;  // per member: replies not yet received for its part
  uint64_t means_missing_total_ = 0;
  std::vector<transport::rpc::CallId> calls_;
  uint64_t window_limit_ = 0;     // contribution bytes that may await their means at once
  uint64_t in_flight_bytes_ = 0;  // contribution bytes (as the tensors hold them) sent, unanswered
  uint64_t bytes_sent_ = 0;
  uint64_t bytes_received_ = 0;
};

}  // namespace hivemind::averaging
