#include "butterfly_round.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <hivemind/common/logging.h>
#include <hivemind/quant/codec.h>

#include "mean_kernels.h"

namespace hivemind::averaging {
namespace {

using transport::Buffer;
using transport::Message;

uint64_t chunk_count(const ElementRange& range, uint64_t chunk_elements) {
  return (range.size() + chunk_elements - 1) / chunk_elements;
}

uint64_t payload_bytes(const std::vector<Buffer>& buffers) {
  uint64_t sum = 0;
  for (const auto& b : buffers)
    sum += b.size();
  return sum;
}

// The quant kernels on the calling thread only: a chunk is small, and a round's members already
// keep every core busy (extra pool threads only contend with them).
constexpr quant::CpuOptions kOneThread{1};

quant::EncodeOptions encode_options(const TransportBackendOptions& options) {
  quant::EncodeOptions encode;
  encode.scheme = quant::Scheme::kBlockAbsmaxU8;
  encode.block_size = options.compression_block_size;
  encode.cpu = kOneThread;
  return encode;
}

// Decode limits for one segment: exactly what the header announced may come back.
quant::DecodeLimits segment_limits(uint64_t elements) {
  quant::DecodeLimits limits;
  limits.max_ndim = 1;
  limits.max_numel = elements;
  return limits;
}

Result<Buffer> encode_segment(const void* values, quant::DType dtype, uint64_t elements,
                              const TransportBackendOptions& options, RegionPool& blocks) {
  const int64_t shape[1] = {static_cast<int64_t>(elements)};
  quant::TensorView view{values, dtype, shape, false};
  const auto encode = encode_options(options);
  HIVEMIND_ASSIGN_OR_RETURN(size_t bytes, quant::encoded_size(view, encode));
  Buffer out = blocks.buffer(bytes);
  HIVEMIND_RETURN_IF_ERROR(quant::encode(view, encode, out.bytes()));
  return out;
}

}  // namespace

Deadline ButterflyRound::call_deadline() const {
  if (deadline_.is_never()) return deadline_;
  return Deadline(deadline_.at() + kCallDeadlineSlack);
}

Result<std::shared_ptr<ButterflyRound>> ButterflyRound::create(
    const Group& group, std::span<const TensorRef> tensors, const TransportBackendOptions& options,
    std::shared_ptr<transport::rpc::Client> client, Deadline deadline, RegionPool& staging_pool,
    RegionPool& sum_pool, std::shared_ptr<RegionPool> blocks) {
  std::shared_ptr<ButterflyRound> r(new ButterflyRound());
  r->client_ = std::move(client);
  r->blocks_ = std::move(blocks);
  r->options_ = options;
  r->deadline_ = deadline;
  r->key_ = group.key;
  r->key_hash_ = key_fingerprint(group.key);
  r->group_hash_ = group_fingerprint(group);
  r->round_ = group.round;
  r->members_ = static_cast<uint32_t>(group.size());
  r->self_ = static_cast<uint32_t>(group.self);
  for (const auto& m : group.members)
    r->endpoints_.push_back(m.endpoint);
  r->layout_.emplace(tensors);
  const TensorLayout& layout = *r->layout_;
  const uint64_t total = layout.total_elements();
  if (total > options.limits.max_total_elements)
    return invalid_argument_error(
        fmt::format("transport averaging: {} elements exceed the limit of {} (PartLimits)", total,
                    options.limits.max_total_elements));

  const uint64_t chunk = options.chunk_elements;
  r->own_ = part_range(total, r->members_, r->self_);
  r->own_chunks_ = chunk_count(r->own_, chunk);
  r->sum_region_ = sum_pool.acquire(r->own_.size() * sizeof(float));
  // No pass copies this member's own values into the sums: a chunk's first contribution is added
  // to them straight from the tensors (contribute()).
  r->sum_ = reinterpret_cast<float*>(r->sum_region_.get());
  // Never below one chunk to every other part (see start()).
  r->window_limit_ = std::max<uint64_t>(options.max_in_flight_bytes,
                                        uint64_t{r->members_ - 1} * chunk * sizeof(float));
  if (!options.compression) {
    auto staging = staging_pool.acquire(layout.staging_bytes());
    uint8_t* data = staging.get();  // before the move below: argument order is unspecified
    r->staging_ = Buffer::wrap(data, layout.staging_bytes(), transport::MemoryType::kHost, -1,
                               std::move(staging));
  }
  r->contributions_.assign(r->own_chunks_, 1);
  r->contributed_.assign(r->own_chunks_ * r->members_, 0);
  r->waiting_.resize(r->own_chunks_);
  r->means_missing_.assign(r->members_, 0);
  for (uint32_t j = 0; j < r->members_; ++j) {
    if (j == r->self_) continue;
    r->means_missing_[j] = chunk_count(part_range(total, r->members_, j), chunk);
    r->means_missing_total_ += r->means_missing_[j];
  }
  return r;
}

std::string ButterflyRound::member_name(uint32_t index) const {
  return fmt::format("member {} ({})", index, endpoints_[index]);
}

Status ButterflyRound::admit(const PartHeader& h) {
  auto refuse = [&](std::string what) {
    Status st = invalid_argument_error(
        fmt::format("round {} of '{}': part message from {}: {}", round_, key_,
                    h.sender < members_ ? member_name(h.sender) : "an unknown member", what));
    fail(st);
    return st;
  };
  if (h.kind != PartKind::kContribution) return refuse("a mean is never sent as a request");
  if (h.members != members_)
    return refuse(fmt::format("it counts {} members, the group {}", h.members, members_));
  if (h.part != self_)
    return refuse(fmt::format("it is for part {}, this member owns part {}", h.part, self_));
  if (h.sender == self_) return refuse("it claims to come from this member");
  const auto codec = options_.compression ? quant::Scheme::kBlockAbsmaxU8 : quant::Scheme::kNone;
  if (h.codec != codec)
    return refuse(fmt::format("it is encoded {}, this member uses {}", quant::scheme_name(h.codec),
                              quant::scheme_name(codec)));
  if (codec != quant::Scheme::kNone && h.block_size != options_.compression_block_size)
    return refuse(fmt::format("compression blocks of {} elements, this member uses {}",
                              h.block_size, options_.compression_block_size));
  if (h.chunk_elements != options_.chunk_elements)
    return refuse(fmt::format("chunks of {} elements, this member uses {}", h.chunk_elements,
                              options_.chunk_elements));
  if (h.total_elements != layout_->total_elements())
    return refuse(fmt::format("tensors differ: it holds {} elements in all, this member {}",
                              h.total_elements, layout_->total_elements()));
  Status layout = layout_->check_segments(h.offset, h.segments);
  if (!layout.is_ok()) return refuse(layout.message());
  return Status::ok();
}

void ButterflyRound::contribute(const PartHeader& h, std::vector<Buffer> payload,
                                transport::rpc::Responder responder) {
  Status admitted = admit(h);
  if (!admitted.is_ok()) {
    responder.reply(admitted);
    return;
  }
  const uint64_t chunk = (h.offset - own_.begin) / options_.chunk_elements;
  std::unique_lock lock(mu_);
  if (done_) {
    Status why = failure_.is_ok() ? canceled_error("the round already finished")
                                  : failure_.with_context("the round failed here");
    lock.unlock();
    responder.reply(why);
    return;
  }
  uint8_t& seen = contributed_[chunk * members_ + h.sender];
  if (seen) {
    Status st =
        protocol_error(fmt::format("round {} of '{}': {} sent the chunk at element {} twice",
                                   round_, key_, member_name(h.sender), h.offset));
    lock.unlock();
    fail(st);
    responder.reply(st);
    return;
  }
  float* sum = sum_ + (h.offset - own_.begin);
  // The chunk's first contribution forms its sum with this member's own values, read from the
  // tensors (fp32 addition commutes, so the order own + first, then the rest, is kept exactly);
  // later ones are added to that sum, and the last one leaves the mean (mean_kernels.h).
  // admit() checked that the segments are the own pieces.
  const bool first = contributions_[chunk] == 1;
  const bool last = contributions_[chunk] + 1 == members_;
  const auto own = layout_->pieces(h.offset, h.count);
  for (size_t i = 0; i < h.segments.size(); ++i) {
    const PartSegment& segment = h.segments[i];
    const void* own_values = layout_->tensor_address(own[i]);
    const uint64_t n = segment.elements;
    if (h.codec == quant::Scheme::kNone) {
      const void* values = payload[i].data();
      if (first && last)
        sum_into_mean(sum, own_values, values, segment.dtype, n, members_);
      else if (first)
        sum_into(sum, own_values, values, segment.dtype, n);
      else if (last)
        add_into_mean(sum, values, segment.dtype, n, members_);
      else
        add_into(sum, values, segment.dtype, n);
    } else {
      // The contribution decodes to fp32 (the sum's type) and is added as it decodes: to the own
      // values for the chunk's first sum, to the sum after that, divided into the mean when it is
      // the last (one pass each, no scratch array). Own values of another dtype are added in a pass
      // of their own, after the first contribution decoded straight into the sum.
      std::span<float> target(sum, n);
      const bool own_fp32 = segment.dtype == quant::DType::kFloat32;
      const float divisor = last ? static_cast<float>(members_) : 1.0f;
      std::span<const float> base = target;
      if (first && own_fp32) base = {static_cast<const float*>(own_values), n};
      Status st = first && !own_fp32
                      ? quant::decode(payload[i].bytes(), quant::DType::kFloat32,
                                      {reinterpret_cast<uint8_t*>(sum), n * sizeof(float)},
                                      segment_limits(n), kOneThread)
                      : quant::decode_add(payload[i].bytes(), base, target, divisor,
                                          segment_limits(n), kOneThread);
      if (!st.is_ok()) {
        // Summed segments cannot be taken back: the round fails, and the tensors stay untouched.
        st = st.with_context(fmt::format("round {} of '{}': {}'s chunk at element {}", round_, key_,
                                         member_name(h.sender), h.offset));
        lock.unlock();
        fail(st);
        responder.reply(st);
        return;
      }
      if (first && !own_fp32) {
        if (last)
          add_into_mean(sum, own_values, segment.dtype, n, members_);
        else
          add_into(sum, own_values, segment.dtype, n);
      }
    }
    sum += n;
  }
  seen = 1;
  bytes_received_ += payload_bytes(payload);
  waiting_[chunk].push_back({h, std::move(responder)});
  if (++contributions_[chunk] == members_) reduce_chunk_locked(chunk);
  check_done_locked();
}

void ButterflyRound::reduce_chunk_locked(uint64_t chunk) {
  const uint64_t offset = own_.begin + chunk * options_.chunk_elements;
  const uint64_t count = std::min(options_.chunk_elements, own_.end - offset);
  // The last contribution left the chunk's mean in the sums (contribute()).
  const float* mean = sum_ + (offset - own_.begin);
  const auto pieces = layout_->pieces(offset, count);
  std::vector<Buffer> means;
  means.reserve(pieces.size());
  const float* at = mean;
  for (const auto& piece : pieces) {
    if (!options_.compression && piece.dtype == quant::DType::kFloat32) {
      // An fp32 mean is its own bytes: sent from the sums (the replies keep their region alive)
      // and copied from there by commit(), never through staging.
      means.push_back(Buffer::wrap(const_cast<float*>(at), piece.elements * sizeof(float),
                                   transport::MemoryType::kHost, -1, sum_region_));
    } else if (!options_.compression) {
      Buffer staged = staging_.slice(layout_->staging_offset(piece),
                                     piece.elements * quant::dtype_size(piece.dtype));
      narrow_into(staged.data(), piece.dtype, at, piece.elements);
      means.push_back(std::move(staged));
    } else {
      auto encoded = encode_segment(at, quant::DType::kFloat32, piece.elements, options_, *blocks_);
      Status st = encoded.status();
      if (!st.is_ok()) {
        // Only a non-finite sum gets here (the quant codec refuses Inf/NaN).
        done_ = true;
        failure_ = st.with_context(
            fmt::format("round {} of '{}': the mean at element {}", round_, key_, offset));
        changed_.notify_all();
        return;  // wait_and_finish() answers the waiting senders with the failure
      }
      means.push_back(std::move(encoded).value());
    }
    at += piece.elements;
  }
  // Compressed, every member, the owner included, decodes the same encodings into its tensors
  // when the round succeeds, so the group agrees on its mean bit for bit.
  if (options_.compression) encoded_means_.push_back({offset, count, means});
  const uint64_t bytes = payload_bytes(means);
  for (auto& w : waiting_[chunk]) {
    PartHeader reply = w.header;
    reply.kind = PartKind::kMean;
    Message message;
    message.metadata = encode_part_header(reply);
    message.tensors = means;  // Buffers share the bytes; nothing is copied
    w.responder.reply(std::move(message));
    bytes_sent_ += bytes;
  }
  waiting_[chunk].clear();
  ++own_chunks_reduced_;
}

void ButterflyRound::start() {
  const TensorLayout& layout = *layout_;
  const uint64_t total = layout.total_elements();
  const uint64_t chunk = options_.chunk_elements;
  uint64_t most_chunks = 0;
  for (uint32_t j = 0; j < members_; ++j)
    most_chunks = std::max(most_chunks, chunk_count(part_range(total, members_, j), chunk));
  // Chunk k of every part before chunk k + 1 of any, each member starting with its successor: the
  // owners receive evenly, and their first chunks complete (and pipeline) early.
  for (uint64_t k = 0; k < most_chunks; ++k) {
    for (uint32_t step = 1; step < members_; ++step) {
      const uint32_t j = (self_ + step) % members_;
      const ElementRange part = part_range(total, members_, j);
      if (k * chunk >= part.size()) continue;
      const uint64_t offset = part.begin + k * chunk;
      const uint64_t count = std::min(chunk, part.end - offset);
      const auto pieces = layout.pieces(offset, count);
      uint64_t window_bytes = 0;
      for (const auto& piece : pieces)
        window_bytes += piece.elements * quant::dtype_size(piece.dtype);
      {
        // The window: at most max_in_flight_bytes of contributions await their means (always
        // room for one chunk to every part, which is what guarantees progress: chunks go out in
        // k-major order, so the oldest unanswered chunk of any member can always complete).
        std::unique_lock lock(mu_);
        auto room = [&] {
          return done_ || in_flight_bytes_ == 0 || in_flight_bytes_ + window_bytes <= window_limit_;
        };
        if (deadline_.is_never())
          changed_.wait(lock, room);
        else if (!changed_.wait_until(lock, deadline_.at(), room))
          return;           // wait_and_finish() reports the deadline
        if (done_) return;  // failed already: nothing more to send
        in_flight_bytes_ += window_bytes;
      }
      auto header = std::make_shared<PartHeader>();
      header->kind = PartKind::kContribution;
      header->codec = options_.compression ? quant::Scheme::kBlockAbsmaxU8 : quant::Scheme::kNone;
      header->block_size = options_.compression ? options_.compression_block_size : 0;
      header->key_hash = key_hash_;
      header->group_hash = group_hash_;
      header->round = round_;
      header->members = members_;
      header->sender = self_;
      header->part = j;
      header->total_elements = total;
      header->chunk_elements = chunk;
      header->offset = offset;
      header->count = count;
      header->segments = TensorLayout::segments_of(pieces);

      Message request;
      request.metadata = encode_part_header(*header);
      for (const auto& piece : pieces) {
        void* values = layout.tensor_address(piece);
        if (!options_.compression) {
          // Sent from the tensor's own memory.
          request.tensors.push_back(Buffer::wrap(values,
                                                 piece.elements * quant::dtype_size(piece.dtype),
                                                 transport::MemoryType::kHost, -1, nullptr));
        } else {
          auto encoded = encode_segment(values, piece.dtype, piece.elements, options_, *blocks_);
          if (!encoded.is_ok()) {
            fail(encoded.status().with_context(
                fmt::format("round {} of '{}': this member's values at element {}", round_, key_,
                            header->offset)));
            return;
          }
          request.tensors.push_back(std::move(encoded).value());
        }
      }
      const uint64_t bytes = request.payload_bytes();
      std::weak_ptr<ButterflyRound> weak = weak_from_this();
      auto self = shared_from_this();
      // The call's own deadline comes a little after the round's, so that at the round's deadline
      // wait_and_finish() says who is missing (then cancels the call), rather than one timeout.
      const transport::rpc::CallId id = client_->call(
          endpoints_[j], kPartMethod, std::move(request), call_deadline(),
          [self, header, window_bytes](Result<Message> reply) {
            self->on_mean(*header, window_bytes, std::move(reply));
          },
          [weak, header](const transport::IncomingFrame& frame) -> Result<std::vector<Buffer>> {
            auto round = weak.lock();
            if (!round) return canceled_error("the averaging round is over");
            return round->allocate_mean(*header, frame);
          });
      std::lock_guard lock(mu_);
      calls_.push_back(id);
      bytes_sent_ += bytes;
    }
  }
}

Result<std::vector<Buffer>> ButterflyRound::allocate_mean(const PartHeader& sent,
                                                          const transport::IncomingFrame& frame) {
  HIVEMIND_ASSIGN_OR_RETURN(PartHeader got, decode_part_header(frame.metadata, options_.limits));
  PartHeader expected = sent;
  expected.kind = PartKind::kMean;
  if (got != expected)
    return protocol_error(fmt::format("{} replied with the mean of another chunk than element {}",
                                      member_name(sent.part), sent.offset));
  HIVEMIND_ASSIGN_OR_RETURN(auto sizes, part_payload_sizes(got));
  if (frame.tensor_sizes.size() != sizes.size() ||
      !std::equal(sizes.begin(), sizes.end(), frame.tensor_sizes.begin()))
    return protocol_error(fmt::format("{}'s mean of the chunk at element {} has the wrong sizes",
                                      member_name(sent.part), sent.offset));
  Buffer staging;
  {
    std::lock_guard lock(mu_);
    if (done_) return canceled_error("the averaging round is over");
    staging = staging_;  // release_memory() may drop the round's own reference meanwhile
  }
  std::vector<Buffer> buffers;
  buffers.reserve(sizes.size());
  if (!options_.compression) {
    // The mean lands where it belongs in staging: no copy later.
    for (const auto& piece : layout_->pieces(sent.offset, sent.count))
      buffers.push_back(staging.slice(layout_->staging_offset(piece),
                                      piece.elements * quant::dtype_size(piece.dtype)));
  } else {
    for (uint64_t size : sizes)
      buffers.push_back(blocks_->buffer(size));
  }
  return buffers;
}

void ButterflyRound::on_mean(const PartHeader& sent, uint64_t window_bytes, Result<Message> reply) {
  {
    std::lock_guard lock(mu_);
    in_flight_bytes_ -= window_bytes;
    changed_.notify_all();
  }
  if (!reply.is_ok()) {
    fail(reply.status().with_context(
        fmt::format("round {} of '{}': no mean from {}", round_, key_, member_name(sent.part))));
    return;
  }
  if (options_.compression) {
    // Kept encoded until the round succeeds, then decoded straight into the tensors (no staging,
    // no copy). Validated now, so that decoding then cannot fail halfway through the tensors.
    const auto pieces = layout_->pieces(sent.offset, sent.count);
    for (size_t i = 0; i < pieces.size(); ++i) {
      auto header =
          quant::decode_header(reply->tensors[i].bytes(), segment_limits(pieces[i].elements));
      Status st = header.status();
      if (st.is_ok() &&
          (header->numel != pieces[i].elements || !quant::decodable_as(*header, pieces[i].dtype)))
        st = protocol_error(fmt::format("an encoding of {} elements for a segment of {}",
                                        header->numel, pieces[i].elements));
      if (!st.is_ok()) {
        fail(st.with_context(fmt::format("round {} of '{}': the mean from {}", round_, key_,
                                         member_name(sent.part))));
        return;
      }
    }
  }
  std::lock_guard lock(mu_);
  if (done_) return;
  bytes_received_ += reply->payload_bytes();
  if (options_.compression)
    encoded_means_.push_back({sent.offset, sent.count, std::move(reply->tensors)});
  --means_missing_[sent.part];
  --means_missing_total_;
  check_done_locked();
}

void ButterflyRound::check_done_locked() {
  if (done_ || own_chunks_reduced_ != own_chunks_ || means_missing_total_ != 0) return;
  done_ = true;
  changed_.notify_all();
}

void ButterflyRound::fail(Status why) {
  std::lock_guard lock(mu_);
  if (done_) return;
  done_ = true;
  failure_ = std::move(why);
  changed_.notify_all();
}

std::string ButterflyRound::missing_locked() const {
  std::vector<std::string> missing;
  for (uint32_t j = 0; j < members_; ++j) {
    if (means_missing_[j] == 0) continue;
    missing.push_back(fmt::format(
        "{} did not reply for {} of {} chunks of its part", member_name(j), means_missing_[j],
        chunk_count(part_range(layout_->total_elements(), members_, j), options_.chunk_elements)));
  }
  for (uint32_t s = 0; s < members_; ++s) {
    if (s == self_) continue;
    uint64_t sent = 0;
    for (uint64_t c = 0; c < own_chunks_; ++c)
      sent += contributed_[c * members_ + s];
    if (sent < own_chunks_)
      missing.push_back(fmt::format("{} sent {} of {} chunks of this member's part", member_name(s),
                                    sent, own_chunks_));
  }
  std::string out;
  for (const auto& m : missing)
    out += (out.empty() ? "" : "; ") + m;
  return out;
}

Status ButterflyRound::wait_and_finish() {
  std::vector<Waiting> waiting;
  std::vector<transport::rpc::CallId> calls;
  Status failure;
  {
    std::unique_lock lock(mu_);
    if (deadline_.is_never())
      changed_.wait(lock, [&] { return done_; });
    else
      changed_.wait_until(lock, deadline_.at(), [&] { return done_; });
    if (!done_) {
      done_ = true;
      failure_ = timeout_error(
          fmt::format("round {} of '{}' missed its deadline: {}", round_, key_, missing_locked()));
    }
    failure = failure_;
    if (!failure.is_ok()) {
      for (auto& chunk : waiting_)
        for (auto& w : chunk)
          waiting.push_back(std::move(w));
      waiting_.clear();
      calls.swap(calls_);
    }
  }
  // Outside the lock: replies and cancels post to the I/O thread, whose callbacks take mu_.
  for (auto& w : waiting)
    w.responder.reply(failure.with_context("the averaging round failed here"));
  for (auto id : calls)
    client_->cancel(id);  // a call that already completed ignores it
  return failure;
}

void ButterflyRound::commit() const {
  if (!options_.compression) {
    // The others' parts came back into staging; this member's part is in the sums (fp32 pieces)
    // or in staging (fp16/bf16 pieces, rounded there by reduce_chunk_locked()).
    const uint8_t* staging = staging_.bytes().data();
    const uint64_t total = layout_->total_elements();
    layout_->copy_from_staging(staging, 0, own_.begin);
    layout_->copy_from_staging(staging, own_.end, total - own_.end);
    if (own_.size() == 0) return;
    const float* mean = sum_;
    for (const auto& piece : layout_->pieces(own_.begin, own_.size())) {
      if (piece.dtype == quant::DType::kFloat32)
        std::memcpy(layout_->tensor_address(piece), mean, piece.elements * sizeof(float));
      else
        layout_->copy_from_staging(staging, own_.begin + (mean - sum_), piece.elements);
      mean += piece.elements;
    }
    return;
  }
  // Every encoding was validated when it arrived (or made here): decoding cannot fail.
  for (const auto& chunk : encoded_means_) {
    const auto pieces = layout_->pieces(chunk.offset, chunk.count);
    for (size_t i = 0; i < pieces.size(); ++i) {
      const auto& piece = pieces[i];
      std::span<uint8_t> out(static_cast<uint8_t*>(layout_->tensor_address(piece)),
                             piece.elements * quant::dtype_size(piece.dtype));
      Status st = quant::decode(chunk.encodings[i].bytes(), piece.dtype, out,
                                segment_limits(piece.elements), kOneThread);
      if (!st.is_ok())
        logger("averaging")
            ->error("round {} of '{}': a validated mean failed to decode: {}", round_, key_,
                    st.to_string());
    }
  }
}

void ButterflyRound::release_memory() {
  std::lock_guard lock(mu_);
  staging_ = {};
  encoded_means_.clear();
  sum_region_.reset();
  sum_ = nullptr;
}

uint64_t ButterflyRound::bytes_sent() const {
  std::lock_guard lock(mu_);
  return bytes_sent_;
}

uint64_t ButterflyRound::bytes_received() const {
  std::lock_guard lock(mu_);
  return bytes_received_;
}

}  // namespace hivemind::averaging
