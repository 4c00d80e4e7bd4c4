// TransportBackend: the group mean over the project's rpc, as hivemind's butterfly all-reduce.
//
// The round's tensors, in order, are one logical sequence of elements cut into group.size()
// contiguous parts; member j owns part j. Every member sends each chunk of part j to member j (its
// own part stays local); the owner sums the contributions in fp32 and, once all of a chunk's
// arrived, replies to every sender with the chunk's mean: the requests are the reduce-scatter, the
// replies the all-gather, and chunks pipeline (chunk k is summed while chunk k+1 is on the wire).
// Means land in staging memory and are copied into the tensors only when every chunk arrived, so a
// failed round leaves the tensors as they were. Wire format: part_message.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <hivemind/averaging/backend.h>
#include <hivemind/averaging/part_message.h>
#include <hivemind/common/result.h>
#include <hivemind/quant/types.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>

namespace hivemind::averaging {

struct TransportBackendOptions {
  // Parts and means on the wire as quant::Scheme::kBlockAbsmaxU8 (the only scheme accepted), or
  // raw when empty. Every member of a group must use the same setting.
  std::optional<quant::Scheme> compression;
  uint32_t compression_block_size = quant::kDefaultBlockSize;  // a power of two in [64, 4096]
  // Elements per part message (2 MiB of fp32 by default). Members must agree: the owner counts
  // contributions chunk by chunk. Each message costs a call, an allocation, a reply and their
  // wake-ups: 64 MiB rounds of 4 members over TCP loopback took ~15% more CPU with 1 MiB chunks
  // than with 2 MiB; larger chunks saved little more and pipeline less (fewer chunks per part).
  uint64_t chunk_elements = uint64_t{1} << 19;
  // Contribution bytes (as the tensors hold them) sent and not yet answered with their mean; later
  // chunks wait for room. Never less than one chunk to every other member.
  uint64_t max_in_flight_bytes = uint64_t{256} << 20;
  // Contributions that arrive before this member entered their round (the leader sends the group
  // to every member at once) are held, up to this many bytes and this many distinct rounds;
  // beyond, they are refused and the sender's round fails.
  uint64_t max_early_bytes = uint64_t{256} << 20;
  uint32_t max_early_rounds = 2;
  // Receive and encoding blocks kept for the next rounds (page faults on fresh memory cost as much
  // as the copies); more may be in use at once, only this much stays cached.
  uint64_t max_pooled_bytes = uint64_t{128} << 20;
  // What an incoming part message may claim (checked before allocating).
  PartLimits limits;
};

class TransportBackend final : public Backend {
 public:
  // Registers kPartMethod on `server` and calls other members through `client`; both stay the
  // caller's (the Averager's). Fails on options it cannot run (a scheme other than
  // kBlockAbsmaxU8, a bad block size, a zero chunk).
  static Result<std::shared_ptr<TransportBackend>> create(
      std::shared_ptr<transport::rpc::Server> server,
      std::shared_ptr<transport::rpc::Client> client, TransportBackendOptions options = {});
  // close().
  ~TransportBackend() override;

  std::string_view name() const override { return "transport"; }
  // Host tensors only (CUDA tensors: the caller stages them in host memory).
  bool usable_for(std::span<const TensorRef> tensors, std::string& device_id) const override;
  // Nothing to set up: returns no bytes.
  Result<std::vector<uint8_t>> leader_setup(const Group& group) override;
  // Backend's contract. The tensors are sent from their own memory (no copy): after a failed
  // round, contributions from them may still be queued to a stalled member until that connection
  // fails or the client's worker stops, so their memory must stay valid until then (the Averager
  // holds its tensors for its whole life; free them only after it closed).
  Status all_reduce_mean(const Group& group, std::span<const TensorRef> tensors, Deadline deadline,
                         RoundReport& report) override;

  // Stops serving: kPartMethod answers kUnavailable, held contributions are refused, a round in
  // progress fails. Idempotent; thread-safe.
  void close();

  // Contributions held for rounds this member has not entered yet (diagnostics, tests).
  size_t held_parts() const;

  struct Core;

 private:
  explicit TransportBackend(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  std::shared_ptr<Core> core_;
};

}  // namespace hivemind::averaging
