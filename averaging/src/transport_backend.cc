#include <algorithm>
#include <deque>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>

#include <hivemind/averaging/transport_backend.h>
#include <hivemind/common/logging.h>
#include <hivemind/quant/cpu_kernels.h>

#include "butterfly_round.h"
#include "region_pool.h"

namespace hivemind::averaging {

using transport::Buffer;
using transport::IncomingFrame;
using transport::Message;
using transport::rpc::Responder;

// What the server side shares with the handlers: the round in progress and the contributions held
// for rounds this member has not entered yet. Handlers hold it weakly; the backend owns it.
struct TransportBackend::Core : std::enable_shared_from_this<TransportBackend::Core> {
  // Where a part message goes, decided under `mu` each time it is looked at.
  enum class Fate { kCurrent, kHold, kRefuse };

  struct Held {
    PartHeader header;
    std::vector<Buffer> payload;
    Responder responder;
    uint64_t bytes = 0;
  };

  TransportBackendOptions options;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;

  // Memory reused from round to round (region_pool.h): staging (a spare for replies still being
  // sent when the next round starts), sums, and blocks for received contributions and encodings.
  RegionPool staging_pool{2, UINT64_MAX};
  RegionPool sum_pool{2, UINT64_MAX};
  std::shared_ptr<RegionPool> blocks;

  std::mutex mu;
  bool closed = false;
  std::shared_ptr<ButterflyRound> current;
  std::vector<Held> held;
  uint64_t held_bytes = 0;
  // The last rounds that finished here and how: their late parts get the outcome as their answer,
  // so every member learns why a round failed (a mismatch found by one owner, say). Round numbers
  // are the leaders' and need not grow from one round to the next, so rounds are recognised by
  // key, group and number together, never by order.
  struct Finished {
    uint64_t key_hash = 0, group_hash = 0, round = 0;
    Status outcome;
  };
  static constexpr size_t kFinishedKept = 16;
  std::deque<Finished> finished;

  // Under mu. `bytes`: the payload the message brings (for the holding budget).
  Fate fate_locked(const PartHeader& h, uint64_t bytes, Status& why) const {
    if (closed) {
      why = unavailable_error("averaging backend closed");
      return Fate::kRefuse;
    }
    if (current && current->matches(h)) return Fate::kCurrent;
    for (const auto& f : finished) {
      if (f.key_hash != h.key_hash || f.group_hash != h.group_hash || f.round != h.round) continue;
      why = f.outcome.is_ok()
                ? canceled_error(fmt::format("round {} already succeeded here", h.round))
                : f.outcome.with_context(fmt::format("round {} failed here", h.round));
      return Fate::kRefuse;
    }
    // A round is held apart from others by key, group and number.
    std::set<std::tuple<uint64_t, uint64_t, uint64_t>> rounds{{h.key_hash, h.group_hash, h.round}};
    for (const auto& x : held)
      rounds.emplace(x.header.key_hash, x.header.group_hash, x.header.round);
    if (rounds.size() > options.max_early_rounds) {
      why = unavailable_error(fmt::format(
          "round {} has not started here, and parts of {} other rounds are held already", h.round,
          options.max_early_rounds));
      return Fate::kRefuse;
    }
    if (held_bytes + bytes > options.max_early_bytes) {
      why = too_large_error(fmt::format(
          "round {} has not started here, and holding {} more bytes would exceed the {} allowed",
          h.round, bytes, options.max_early_bytes));
      return Fate::kRefuse;
    }
    return Fate::kHold;
  }

  Result<std::vector<Buffer>> allocate(const IncomingFrame& frame) {
    HIVEMIND_ASSIGN_OR_RETURN(PartHeader h, decode_part_header(frame.metadata, options.limits));
    if (h.kind != PartKind::kContribution)
      return protocol_error("averaging part: a request must be a contribution");
    HIVEMIND_ASSIGN_OR_RETURN(auto sizes, part_payload_sizes(h));
    if (frame.tensor_sizes.size() != sizes.size())
      return protocol_error(fmt::format("averaging part: {} payload tensors for {} segments",
                                        frame.tensor_sizes.size(), sizes.size()));
    uint64_t bytes = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (frame.tensor_sizes[i] != sizes[i])
        return protocol_error(
            fmt::format("averaging part: segment {} brings {} bytes, its header says {}", i,
                        frame.tensor_sizes[i], sizes[i]));
      bytes += sizes[i];
    }
    std::shared_ptr<ButterflyRound> round;
    {
      std::lock_guard lock(mu);
      Status why;
      switch (fate_locked(h, bytes, why)) {
        case Fate::kRefuse:
          return why;
        case Fate::kHold:
          break;
        case Fate::kCurrent:
          round = current;
          break;
      }
    }
    if (round) HIVEMIND_RETURN_IF_ERROR(round->admit(h));
    // One block per segment, so every segment is aligned for its dtype.
    std::vector<Buffer> buffers;
    buffers.reserve(sizes.size());
    for (uint64_t size : sizes)
      buffers.push_back(blocks->buffer(size));
    return buffers;
  }

  void handle(Message request, Responder responder) {
    auto decoded = decode_part_header(request.metadata, options.limits);
    if (!decoded.is_ok()) {  // the allocator decoded the same bytes; kept as a guard
      responder.reply(decoded.status());
      return;
    }
    PartHeader h = std::move(decoded).value();
    std::shared_ptr<ButterflyRound> round;
    {
      std::lock_guard lock(mu);
      Status why;
      const uint64_t bytes = request.payload_bytes();
      switch (fate_locked(h, bytes, why)) {
        case Fate::kRefuse:
          break;
        case Fate::kHold:
          held.push_back({std::move(h), std::move(request.tensors), std::move(responder), bytes});
          held_bytes += bytes;
          return;
        case Fate::kCurrent:
          round = current;
          break;
      }
      if (!round) {
        responder.reply(why);
        return;
      }
    }
    round->contribute(h, std::move(request.tensors), std::move(responder));
  }

  void close() {
    std::vector<Held> refused;
    std::shared_ptr<ButterflyRound> round;
    {
      std::lock_guard lock(mu);
      if (closed) return;
      closed = true;
      refused.swap(held);
      held_bytes = 0;
      round = current;
    }
    for (auto& x : refused)
      x.responder.reply(unavailable_error("averaging backend closed"));
    if (round) round->fail(canceled_error("averaging backend closed"));
    server->handle(std::string(kPartMethod), [](const Message&, Responder responder) {
      responder.reply(unavailable_error("averaging backend closed"));
    });
  }
};

Result<std::shared_ptr<TransportBackend>> TransportBackend::create(
    std::shared_ptr<transport::rpc::Server> server, std::shared_ptr<transport::rpc::Client> client,
    TransportBackendOptions options) {
  if (!server || !client)
    return invalid_argument_error("TransportBackend needs an rpc server and an rpc client");
  if (options.compression && *options.compression != quant::Scheme::kBlockAbsmaxU8)
    return invalid_argument_error(
        fmt::format("transport averaging compresses with block_absmax_u8 only, not {}",
                    quant::scheme_name(*options.compression)));
  if (options.compression)
    HIVEMIND_RETURN_IF_ERROR(
        quant::validate_block_size(quant::Scheme::kBlockAbsmaxU8, options.compression_block_size));
  if (options.chunk_elements == 0 || options.chunk_elements > options.limits.max_chunk_elements)
    return invalid_argument_error(
        fmt::format("chunk_elements {} must lie in [1, {}] (PartLimits::max_chunk_elements)",
                    options.chunk_elements, options.limits.max_chunk_elements));
  auto core = std::make_shared<Core>();
  core->options = options;
  core->blocks = std::make_shared<RegionPool>(SIZE_MAX, options.max_pooled_bytes);
  core->server = std::move(server);
  core->client = std::move(client);
  std::weak_ptr<Core> weak = core;
  core->server->handle(
      std::string(kPartMethod),
      [weak](Message request, Responder responder) {
        auto self = weak.lock();
        if (!self) {
          responder.reply(unavailable_error("averaging backend closed"));
          return;
        }
        self->handle(std::move(request), std::move(responder));
      },
      [weak](const IncomingFrame& frame) -> Result<std::vector<Buffer>> {
        auto self = weak.lock();
        if (!self) return unavailable_error("averaging backend closed");
        return self->allocate(frame);
      });
  return std::shared_ptr<TransportBackend>(new TransportBackend(std::move(core)));
}

TransportBackend::~TransportBackend() {
  close();
}

void TransportBackend::close() {
  core_->close();
}

size_t TransportBackend::held_parts() const {
  std::lock_guard lock(core_->mu);
  return core_->held.size();
}

bool TransportBackend::usable_for(std::span<const TensorRef> tensors,
                                  std::string& device_id) const {
  device_id.clear();
  return check_round_tensors(tensors).is_ok() &&
         std::all_of(tensors.begin(), tensors.end(),
                     [](const TensorRef& t) { return t.memory == transport::MemoryType::kHost; });
}

Result<std::vector<uint8_t>> TransportBackend::leader_setup(const Group&) {
  return std::vector<uint8_t>{};
}

Status TransportBackend::all_reduce_mean(const Group& group, std::span<const TensorRef> tensors,
                                         Deadline deadline, RoundReport& report) {
  HIVEMIND_RETURN_IF_ERROR(check_round_tensors(tensors));
  for (const auto& t : tensors)
    if (t.memory != transport::MemoryType::kHost)
      return unsupported_error("transport averaging takes host tensors (stage CUDA tensors first)");
  if (group.members.empty() || group.self >= group.size())
    return invalid_argument_error(
        fmt::format("group of {} members with self = {}", group.size(), group.self));
  if (group.size() > core_->options.limits.max_members)
    return invalid_argument_error(fmt::format("group of {} members exceeds the limit of {}",
                                              group.size(), core_->options.limits.max_members));
  if (group.size() == 1) return Status::ok();  // the mean of one member is its own tensors

  HIVEMIND_ASSIGN_OR_RETURN(
      auto round, ButterflyRound::create(group, tensors, core_->options, core_->client, deadline,
                                         core_->staging_pool, core_->sum_pool, core_->blocks));
  std::vector<Core::Held> mine, refused;
  {
    std::lock_guard lock(core_->mu);
    if (core_->closed) return unavailable_error("averaging backend closed");
    if (core_->current)
      return internal_error("TransportBackend::all_reduce_mean called while a round runs");
    core_->current = round;
    // Held parts of this round join it. Those of other rounds under this key are for groups this
    // member is not in (it takes part in one round of a key at a time, and joins the next one
    // only after this one): refused now, so their senders fail fast.
    std::vector<Core::Held> keep;
    for (auto& x : core_->held) {
      if (round->matches(x.header)) {
        mine.push_back(std::move(x));
      } else if (x.header.key_hash == round->key_hash()) {
        refused.push_back(std::move(x));
      } else {
        keep.push_back(std::move(x));
      }
    }
    core_->held.swap(keep);
    core_->held_bytes = 0;
    for (const auto& x : core_->held)
      core_->held_bytes += x.bytes;
  }
  for (auto& x : refused)
    x.responder.reply(canceled_error(fmt::format(
        "round {} of that group is not this member's: it is in round {} of another group under "
        "the same key",
        x.header.round, round->round())));
  for (auto& x : mine)
    round->contribute(x.header, std::move(x.payload), std::move(x.responder));

  round->start();
  Status outcome = round->wait_and_finish();
  {
    std::lock_guard lock(core_->mu);
    core_->current.reset();
    core_->finished.push_back({round->key_hash(), round->group_hash(), round->round(), outcome});
    if (core_->finished.size() > Core::kFinishedKept) core_->finished.pop_front();
  }
  report.bytes_sent += round->bytes_sent();
  report.bytes_received += round->bytes_received();
  if (outcome.is_ok()) round->commit();
  round->release_memory();
  if (!outcome.is_ok())
    logger("averaging")
        ->debug("transport round {} of '{}' failed: {}", group.round, group.key,
                outcome.to_string());
  return outcome;
}

}  // namespace hivemind::averaging
