// Node core: request handling, reply matching, timeouts, admission, join transfer, maintenance.
// The operations (lookups, get, store, bootstrap) are in node_operations.cc.
#include <algorithm>
#include <cmath>

#include <hivemind/common/logging.h>
#include <hivemind/dht/node.h>

#include "node_operations.h"

namespace hivemind::dht {

using wire::ErrorCode;
using wire::MessageType;

namespace {

// a - b without overflow: times in headers come from peers and may be anything.
int64_t saturating_sub(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_sub_overflow(a, b, &out)) return a < b ? INT64_MIN : INT64_MAX;
  return out;
}

}  // namespace

Node::Node(NodeOptions options, Contact self, const Clock& clock, NodeNetwork& network,
           uint64_t seed)
    : options_(options),
      self_(std::move(self)),
      clock_(clock),
      network_(network),
      rng_(seed),
      routing_(self_.id, options.k, options.replacement_cache),
      storage_(options.storage),
      cache_(options.cache),
      rate_limiter_(options.rate),
      blacklist_(options.blacklist_base, options.blacklist_max, options.blacklist_after) {
  routing_.touch_all(now());
  next_housekeeping_ = now() + options_.maintenance_interval;
  next_refresh_ = now() + options_.refresh_interval;
  next_maintenance_ = next_housekeeping_;
}

Node::~Node() = default;

wire::Header Node::make_header(MessageType type, uint64_t request_id) const {
  wire::Header header;
  header.type = type;
  header.flags = options_.client_mode ? wire::kFlagClient : 0;
  header.request_id = request_id;
  header.sender = self_.id;
  header.sender_time = dht_now();
  header.sender_address = options_.client_mode ? std::string() : self_.address;
  return header;
}

SteadyTime Node::rpc_deadline(SteadyTime op_deadline) const {
  return std::min(op_deadline, now() + options_.request_timeout);
}

uint64_t Node::send(const std::string& to, std::optional<NodeId> expected, MessageType type,
                    wire::Body body, Purpose purpose, uint64_t op_id, std::vector<uint32_t> targets,
                    SteadyTime deadline) {
  uint64_t request_id;
  // Unpredictable ids make a forged reply hard to match; 0 is never used.
  do {
    request_id = rng_();
  } while (request_id == 0 || pending_.count(request_id));
  wire::Message message{make_header(type, request_id), std::move(body)};
  std::vector<uint8_t> frame = wire::encode(message);
  stats_.requests_sent++;
  stats_.bytes_sent += frame.size();
  pending_.emplace(request_id, Pending{to, expected, type, purpose, op_id, std::move(targets),
                                       deadline, dht_now(), now()});
  request_timeouts_.emplace(deadline, request_id);
  if (purpose == Purpose::kOperation && type == MessageType::kFind) {
    Milliseconds stall = stall_timeout();
    if (now() + stall < deadline) request_stalls_.emplace(now() + stall, request_id);
  }
  network_.send_request(to, request_id, std::move(frame), deadline);
  return request_id;
}

std::vector<uint8_t> Node::error_reply(uint64_t request_id, ErrorCode code, std::string message) {
  if (message.size() > options_.wire.max_error_bytes) message.resize(options_.wire.max_error_bytes);
  return wire::encode(wire::Message{make_header(MessageType::kError, request_id),
                                    wire::ErrorReply{code, std::move(message)}});
}

// ---- serving requests ---------------------------------------------------------------------------

std::vector<uint8_t> Node::handle_request(std::span<const uint8_t> frame) {
  stats_.requests_received++;
  stats_.bytes_received += frame.size();
  auto header = wire::decode_header(frame, options_.wire);
  if (!header.is_ok()) {
    stats_.malformed_requests++;
    bool version = header.status().code() == StatusCode::kUnsupported;
    return error_reply(0, version ? ErrorCode::kUnsupportedVersion : ErrorCode::kMalformed,
                       header.status().message());
  }
  const uint64_t request_id = header->request_id;
  // Rate limits come before the body is parsed: a flood costs a header decode each.
  std::string peer_key =
      header->sender_address.empty() ? "client:" + header->sender.hex() : header->sender_address;
  if (!rate_limiter_.allow(peer_key, now())) {
    stats_.rate_limited++;
    return error_reply(request_id, ErrorCode::kRateLimited, "rate limit exceeded");
  }
  auto message = wire::decode(frame, options_.wire);
  if (!message.is_ok()) {
    stats_.malformed_requests++;
    return error_reply(request_id, ErrorCode::kMalformed, message.status().message());
  }
  const wire::Header& h = message->header;
  if (!wire::is_request(h.type)) {
    stats_.malformed_requests++;
    return error_reply(request_id, ErrorCode::kMalformed,
                       std::string(wire::message_type_name(h.type)) + " is not a request");
  }
  if (h.sender == self_.id)
    return error_reply(request_id, ErrorCode::kRefused, "sender uses this node's id");
  // The request may have spent up to a timeout in flight, so the bound is looser than at admission.
  int64_t skew = saturating_sub(h.sender_time, dht_now());
  int64_t tolerance = (options_.max_clock_skew + options_.request_timeout).count();
  if (skew > tolerance || skew < -tolerance) {
    return error_reply(request_id, ErrorCode::kClockSkew,
                       "clock differs from this node's by " + std::to_string(skew) + " ms");
  }
  maybe_probe(h);
  wire::Message reply{make_header(wire::reply_type_for(h.type), request_id), std::monostate{}};
  if (const auto* find = std::get_if<wire::FindRequest>(&message->body)) {
    reply.body = answer_find(*find, h.sender);
  } else if (const auto* store = std::get_if<wire::StoreRequest>(&message->body)) {
    reply.body = answer_store(*store, h.sender);
  }
  return wire::encode(reply);
}

wire::FindReply Node::answer_find(const wire::FindRequest& find, const NodeId& sender) {
  wire::FindReply reply;
  reply.entries.reserve(find.keys.size());
  const size_t contacts = std::min(options_.k, options_.wire.max_contacts_per_reply);
  // What the frame can still take: records get what the contacts leave, in key order.
  size_t header_bytes = 64 + self_.address.size();
  size_t budget = options_.wire.max_frame_bytes > header_bytes
                      ? options_.wire.max_frame_bytes - header_bytes
                      : 0;
  for (const auto& key : find.keys) {
    wire::FoundEntry entry;
    entry.contacts = routing_.nearest(key, contacts, sender, /*healthy_only=*/true);
    if (entry.contacts.size() < contacts) {
      // Too few without the suspects: fill up with them rather than answer short.
      for (auto& contact : routing_.nearest(key, contacts, sender)) {
        if (entry.contacts.size() >= contacts) break;
        if (std::find(entry.contacts.begin(), entry.contacts.end(), contact) ==
            entry.contacts.end()) {
          entry.contacts.push_back(std::move(contact));
        }
      }
      std::sort(entry.contacts.begin(), entry.contacts.end(),
                [&](const Contact& a, const Contact& b) { return a.id.closer_to(key, b.id); });
    }
    size_t used = 12;
    for (const auto& contact : entry.contacts)
      used += wire::encoded_contact_size(contact);
    budget = budget > used ? budget - used : 0;
    if (!find.nodes_only) {
      if (auto record = local_get(key)) {
        entry.record =
            wire::fit_record(*record, budget, options_.wire.max_subkeys_per_key, entry.truncated);
        size_t size = wire::encoded_record_size(entry.record);
        budget = budget > size ? budget - size : 0;
      }
    }
    reply.entries.push_back(std::move(entry));
  }
  return reply;
}

wire::StoreReply Node::answer_store(const wire::StoreRequest& store, const NodeId& sender) {
  wire::StoreReply reply;
  reply.statuses.reserve(store.items.size());
  DhtTime t = dht_now();
  for (const auto& item : store.items) {
    if (options_.client_mode) {
      reply.statuses.push_back(wire::StoreStatus::kRefused);
      continue;
    }
    Storage& target = item.in_cache ? cache_ : storage_;
    reply.statuses.push_back(
        target.store(item.key, item.subkey, ValueEntry{item.value, item.expiration}, sender, t));
  }
  return reply;
}

std::optional<Record> Node::local_get(const NodeId& key) const {
  DhtTime t = dht_now();
  auto stored = storage_.get(key, t);
  auto cached = cache_.get(key, t);
  if (!cached) return stored;
  if (!stored) return cached;
  stored->merge(*cached);
  return stored;
}

// ---- admission --------------------------------------------------------------------------------

void Node::maybe_probe(const wire::Header& header) {
  // A peer that asked us is admitted only after it answers a ping at the address it claims
  // (libp2p's rule), so a forged sender cannot plant itself in our table.
  if ((header.flags & wire::kFlagClient) || header.sender_address.empty()) return;
  if (routing_.contains(header.sender)) return;
  int index = routing_.bucket_index(header.sender);
  if (index < 0 || routing_.bucket(index).size() >= options_.k)
    return;  // full: nothing to gain now
  if (probes_in_flight_ >= options_.max_probes_in_flight) return;
  if (blacklist_.is_banned(header.sender_address, now())) return;
  auto [it, inserted] = probed_.try_emplace(header.sender, now());
  if (!inserted) {
    if (now() - it->second < options_.refresh_interval / 10) return;
    it->second = now();
  }
  ++probes_in_flight_;
  stats_.probes_sent++;
  send(header.sender_address, header.sender, MessageType::kPing, std::monostate{}, Purpose::kProbe,
       0, {}, now() + options_.request_timeout);
}

void Node::admit(const Contact& contact) {
  joined_ = true;
  auto result = routing_.on_answered(contact, now());
  if (result.check) {
    // The bucket is full: its least-recently-seen entry must prove it is alive or make room.
    send(result.check->address, result.check->id, MessageType::kPing, std::monostate{},
         Purpose::kEvictionCheck, 0, {}, now() + options_.request_timeout);
  }
  if (result.outcome == RoutingTable::Outcome::kAdded) transfer_to(contact);
}

namespace {

// The id range [low, high] of keys whose common prefix with `id` is exactly `level` bits long.
std::pair<NodeId, NodeId> level_range(const NodeId& id, int level) {
  NodeId::Bytes low = id.bytes(), high = id.bytes();
  for (int bit = level; bit < NodeId::kBits; ++bit) {
    bool value = bit == level ? !id.bit(bit) : false;
    uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
    size_t byte = static_cast<size_t>(bit / 8);
    low[byte] = value ? (low[byte] | mask) : (low[byte] & static_cast<uint8_t>(~mask));
    bool high_value = bit == level ? !id.bit(bit) : true;
    high[byte] = high_value ? (high[byte] | mask) : (high[byte] & static_cast<uint8_t>(~mask));
  }
  return {NodeId(low), NodeId(high)};
}

}  // namespace

void Node::transfer_to(const Contact& contact) {
  // Kademlia's join transfer: push `contact` the records it should now hold. Instead of scanning
  // all storage per new contact (hivemind: DHT bug 6 in docs/hivemind-reference.md), look only at
  // the id ranges where it can be among the r closest. With c = cpl(self, contact): a key sharing
  // exactly p <= c bits with the contact has every known node that shares exactly p bits with the
  // contact strictly closer (bucket p for p < c; ourselves and every bucket deeper than c for p =
  // c), so levels with >= r of them are skipped; keys sharing more than c bits form one range on
  // the contact's side of bucket c. Storage is ordered by key, so each level is one range lookup,
  // and only keys found there get the exact check.
  if (options_.client_mode || storage_.num_keys() == 0) return;
  const NodeId& n = contact.id;
  const int c = self_.id.common_prefix_length(n);
  const size_t r = options_.replicas;
  size_t beyond = 1;  // our own node, plus every bucket deeper than c
  for (int i = c + 1; i < RoutingTable::kBuckets; ++i)
    beyond += routing_.bucket(i).size();

  std::vector<wire::StoreItem> items;
  DhtTime t = dht_now();
  auto consider = [&](const NodeId& key, const Record& record) {
    // Exact check: is the contact among the r closest we know (ourselves included)?
    auto nearest = routing_.nearest(key, r);
    nearest.push_back(self_);
    std::sort(nearest.begin(), nearest.end(),
              [&](const Contact& a, const Contact& b) { return a.id.closer_to(key, b.id); });
    if (nearest.size() > r) nearest.resize(r);
    bool owner =
        std::any_of(nearest.begin(), nearest.end(), [&](const Contact& x) { return x.id == n; });
    if (!owner) return true;
    if (record.regular)
      items.push_back(
          {key, std::nullopt, record.regular->value, record.regular->expiration, false});
    for (const auto& [subkey, entry] : record.dictionary) {
      items.push_back({key, subkey, entry.value, entry.expiration, false});
    }
    return items.size() < options_.max_transfer_items;
  };
  // Levels up to c, one range each, only where fewer than r known nodes are surely closer.
  for (int level = 0; level <= c && items.size() < options_.max_transfer_items; ++level) {
    size_t closer = level < c ? routing_.bucket(level).size() : beyond;
    if (closer >= r) continue;
    auto [low, high] = level_range(n, level);
    storage_.for_each_in_range(low, high, t, consider);
  }
  // Every deeper level together is one contiguous range: the keys sharing more than c bits with the
  // contact (its side of our bucket c), where we hold few keys; each gets the exact check.
  if (items.size() < options_.max_transfer_items) {
    NodeId::Bytes low = n.bytes(), high = n.bytes();
    for (int bit = c + 1; bit < NodeId::kBits; ++bit) {
      uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
      low[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~mask);
      high[static_cast<size_t>(bit / 8)] |= mask;
    }
    storage_.for_each_in_range(NodeId(low), NodeId(high), t, consider);
  }
  if (items.empty()) return;
  stats_.transfer_items_sent += items.size();
  for (size_t begin = 0; begin < items.size(); begin += options_.wire.max_keys_per_request) {
    size_t end = std::min(items.size(), begin + options_.wire.max_keys_per_request);
    wire::StoreRequest request{
        {std::make_move_iterator(items.begin() + static_cast<std::ptrdiff_t>(begin)),
         std::make_move_iterator(items.begin() + static_cast<std::ptrdiff_t>(end))}};
    send(contact.address, contact.id, MessageType::kStore, std::move(request),
         Purpose::kFireAndForget, 0, {}, now() + options_.request_timeout);
  }
}

// ---- replies ----------------------------------------------------------------------------------

void Node::handle_reply(const std::string& from, uint64_t request_id,
                        std::span<const uint8_t> frame) {
  stats_.replies_received++;
  stats_.bytes_received += frame.size();
  auto it = pending_.find(request_id);
  if (it == pending_.end() || it->second.to != from) {
    // Not an answer to anything we asked this peer: ignored, and it cannot complete anything.
    stats_.unmatched_replies++;
    return;
  }
  auto message = wire::decode(frame, options_.wire);
  if (!message.is_ok()) {
    stats_.malformed_replies++;
    complete_request(it, Failed{message.status()});
    return;
  }
  const wire::Header& h = message->header;
  const Pending& pending = it->second;
  if (h.request_id != request_id ||
      (h.type != wire::reply_type_for(pending.type) && h.type != MessageType::kError)) {
    stats_.unmatched_replies++;
    complete_request(it, Failed{protocol_error("reply does not match the request")});
    return;
  }
  if (pending.expected && h.sender != *pending.expected) {
    // Another node answers at that address now (a restart under a new id): the one we wanted is
    // gone.
    stats_.replaced_peers++;
    complete_request(it, Failed{not_found_error("node " + pending.expected->short_hex() +
                                                " no longer at " + from)});
    return;
  }
  if (h.type == MessageType::kError) {
    stats_.error_replies++;
    const auto& error = std::get<wire::ErrorReply>(message->body);
    complete_request(it, Refused{unavailable_error("peer " + from + " answered " +
                                                   std::string(wire::error_code_name(error.code)) +
                                                   ": " + error.message)});
    return;
  }
  complete_request(it, Answered{*message});
}

void Node::handle_failure(const std::string& to, uint64_t request_id, const Status& why) {
  auto it = pending_.find(request_id);
  if (it == pending_.end() || it->second.to != to) return;
  stats_.unanswered_requests++;
  complete_request(it, Failed{why});
}

void Node::complete_request(PendingMap::iterator it, const RequestOutcome& outcome) {
  Pending done = std::move(it->second);
  pending_.erase(it);
  if (done.purpose == Purpose::kProbe && probes_in_flight_ > 0) --probes_in_flight_;
  if (const auto* answered = std::get_if<Answered>(&outcome)) {
    learn_from_answer(done, answered->reply.header);
  } else if (std::holds_alternative<Refused>(outcome)) {
    // Alive but unwilling: no failure of the peer, and an eviction check ends without evicting.
    if (done.purpose == Purpose::kEvictionCheck && done.expected)
      routing_.clear_pinging(*done.expected);
  } else {
    blacklist_.on_failure(done.to, now());
    if (done.expected) {
      if (done.purpose == Purpose::kEvictionCheck)
        routing_.evict(*done.expected);
      else
        routing_.on_failure(*done.expected, options_.failures_before_eviction);
    }
  }
  if (!done.op_id) return;
  auto op = ops_.find(done.op_id);
  if (op == ops_.end() || op->second->finished) return;
  if (const auto* answered = std::get_if<Answered>(&outcome)) {
    op->second->on_reply(*this, done, answered->reply);
  } else {
    const Status& why = std::holds_alternative<Refused>(outcome) ? std::get<Refused>(outcome).why
                                                                 : std::get<Failed>(outcome).why;
    op->second->on_failure(*this, done, why);
  }
  reap(done.op_id);
}

void Node::learn_from_answer(const Pending& done, const wire::Header& h) {
  blacklist_.on_success(done.to);
  observe_rtt(now() - done.sent);
  // Clock check on every answer (hivemind checks at ping): half the round trip is the uncertainty.
  DhtTime received = dht_now();
  int64_t skew = saturating_sub(h.sender_time, done.sent_dht + (received - done.sent_dht) / 2);
  int64_t tolerance = options_.max_clock_skew.count() + (received - done.sent_dht) / 2;
  bool skewed = skew > tolerance || skew < -tolerance;
  if (skewed) {
    stats_.skewed_peers++;
    logger("dht")->debug("peer {} at {} is {} ms off our clock: not admitted", h.sender.short_hex(),
                         done.to, skew);
    if (done.purpose == Purpose::kEvictionCheck && done.expected)
      routing_.clear_pinging(*done.expected);
  } else if (!(h.flags & wire::kFlagClient) && !options_.client_mode) {
    admit(Contact{h.sender, done.to});
  } else if (!(h.flags & wire::kFlagClient)) {
    // A client keeps a routing table to find its way, but never transfers records.
    routing_.on_answered(Contact{h.sender, done.to}, now());
  }
}

// ---- time -------------------------------------------------------------------------------------

void Node::observe_rtt(SteadyTime::duration sample) {
  // Jacobson/Karels, as TCP: the stall timeout follows the round trips this node actually sees.
  double ms = std::chrono::duration<double, std::milli>(sample).count();
  if (srtt_ms_ < 0) {
    srtt_ms_ = ms;
    rttvar_ms_ = ms / 2;
  } else {
    rttvar_ms_ = 0.75 * rttvar_ms_ + 0.25 * std::abs(srtt_ms_ - ms);
    srtt_ms_ = 0.875 * srtt_ms_ + 0.125 * ms;
  }
}

Milliseconds Node::stall_timeout() const {
  if (options_.stall_timeout.count() > 0) return options_.stall_timeout;
  Milliseconds ceiling = options_.request_timeout / 3;
  if (srtt_ms_ < 0) return ceiling;
  auto estimate = Milliseconds(static_cast<int64_t>(srtt_ms_ + 4 * rttvar_ms_) + 1);
  return std::clamp(estimate, std::min(Milliseconds(20), ceiling), ceiling);
}

void Node::tick() {
  SteadyTime t = now();
  while (!request_timeouts_.empty() && request_timeouts_.top().first <= t) {
    auto [deadline, request_id] = request_timeouts_.top();
    request_timeouts_.pop();
    auto it = pending_.find(request_id);
    if (it != pending_.end() && it->second.deadline == deadline) {
      stats_.unanswered_requests++;
      complete_request(
          it, Failed{timeout_error("dht " + std::string(wire::message_type_name(it->second.type)) +
                                   " to " + it->second.to + " got no answer in time")});
    }
  }
  while (!request_stalls_.empty() && request_stalls_.top().first <= t) {
    uint64_t request_id = request_stalls_.top().second;
    request_stalls_.pop();
    auto it = pending_.find(request_id);
    if (it == pending_.end() || !it->second.op_id) continue;
    uint64_t op_id = it->second.op_id;
    auto op = ops_.find(op_id);
    if (op != ops_.end() && !op->second->finished) {
      op->second->on_stall(*this,
                           it->second);  // element references survive a rehash; iterators not
      reap(op_id);
    }
  }
  while (!op_deadlines_.empty() && op_deadlines_.top().first <= t) {
    uint64_t op_id = op_deadlines_.top().second;
    op_deadlines_.pop();
    auto it = ops_.find(op_id);
    if (it != ops_.end() && !it->second->finished) {
      it->second->abort(*this, timeout_error("dht operation reached its deadline"));
      reap(op_id);
    }
  }
  if (t >= next_maintenance_) maintenance();
}

SteadyTime Node::next_wakeup() {
  // Answered requests leave their timeout and stall entries behind; drop them here so that an idle
  // node is not woken for nothing (thousands of nodes share one thread in the simulator).
  auto stale = [&](const TimePoint& top, bool stall) {
    auto it = pending_.find(top.second);
    return it == pending_.end() || (!stall && it->second.deadline != top.first);
  };
  while (!request_timeouts_.empty() && stale(request_timeouts_.top(), false))
    request_timeouts_.pop();
  while (!request_stalls_.empty() && stale(request_stalls_.top(), true))
    request_stalls_.pop();
  while (!op_deadlines_.empty() && !ops_.count(op_deadlines_.top().second))
    op_deadlines_.pop();
  SteadyTime next = next_maintenance_;
  if (!request_timeouts_.empty()) next = std::min(next, request_timeouts_.top().first);
  if (!request_stalls_.empty()) next = std::min(next, request_stalls_.top().first);
  if (!op_deadlines_.empty()) next = std::min(next, op_deadlines_.top().first);
  return next;
}

void Node::maintenance() {
  // Idle nodes must cost nothing per tick (thousands share one thread in the simulator), so the
  // bucket scan runs only when the earliest bucket refresh is due and housekeeping every interval.
  SteadyTime t = now();
  if (t >= next_housekeeping_) {
    next_housekeeping_ = t + options_.maintenance_interval;
    DhtTime dt = dht_now();
    if (auto next = storage_.next_expiration(); next && *next <= dt) storage_.expire(dt);
    if (auto next = cache_.next_expiration(); next && *next <= dt) cache_.expire(dt);
    // The per-peer maps are swept less often: thousands of simulated nodes share one thread.
    if (t >= next_sweep_) {
      next_sweep_ = t + 6 * options_.maintenance_interval;
      rate_limiter_.prune(t);
      blacklist_.prune(t);
      std::erase_if(probed_,
                    [&](const auto& item) { return t - item.second > options_.refresh_interval; });
    }
    check_liveness(t);
    // A node that knows fewer than k peers (its join met a dying neighbourhood, or it was cut off)
    // looks itself up again every interval instead of waiting for the bucket refresh.
    if (joined_ && routing_.size() > 0 && routing_.size() < options_.k && !options_.client_mode) {
      find_nearest(self_.id, options_.k, t + 4 * options_.request_timeout, nullptr);
    }
    // Everyone we knew is gone: knock at the initial peers again (their answers re-admit them).
    if (joined_ && routing_.size() == 0) {
      for (const auto& address : bootstrap_peers_) {
        send(address, std::nullopt, MessageType::kPing, std::monostate{}, Purpose::kFireAndForget,
             0, {}, t + options_.request_timeout);
      }
    }
  }
  if (t >= next_refresh_ && routing_.size() > 0) {
    for (int index : routing_.idle_buckets(t, options_.refresh_interval))
      refresh_bucket(index);
  }
  next_refresh_ = routing_.next_refresh(options_.refresh_interval);
  next_maintenance_ = std::min(next_housekeeping_, std::max(next_refresh_, t + Milliseconds(1)));
}

void Node::check_liveness(SteadyTime t) {
  // Entries are otherwise checked only when used, so under churn tables fill with the dead and
  // every lookup waits for them. Those not heard from for `liveness_check_after` are pinged, oldest
  // first, a bounded number per interval; one that does not answer is evicted (its replacement
  // promoted).
  if (options_.liveness_check_after.count() <= 0 || options_.max_liveness_pings == 0) return;
  std::vector<std::pair<SteadyTime, Contact>> stale;
  for (int index = 0; index <= routing_.deepest_bucket(); ++index) {
    for (const auto& entry : routing_.bucket(index)) {
      if (!entry.pinging && t - entry.last_seen >= options_.liveness_check_after) {
        stale.emplace_back(entry.last_seen, entry.contact);
      }
    }
  }
  size_t count = std::min(stale.size(), options_.max_liveness_pings);
  std::partial_sort(stale.begin(), stale.begin() + static_cast<std::ptrdiff_t>(count), stale.end(),
                    [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < count; ++i) {
    const Contact& contact = stale[i].second;
    routing_.mark_pinging(contact.id);
    stats_.liveness_pings++;
    send(contact.address, contact.id, MessageType::kPing, std::monostate{}, Purpose::kEvictionCheck,
         0, {}, t + options_.request_timeout);
  }
}

void Node::refresh_bucket(int index) {
  routing_.touch_bucket(index, now());
  stats_.refreshes++;
  NodeId target = NodeId::random_in_bucket(self_.id, index, rng_);
  find_nearest(target, options_.beta, now() + 4 * options_.request_timeout, nullptr);
}

// ---- operations bookkeeping -------------------------------------------------------------------

uint64_t Node::add_operation(std::unique_ptr<Operation> op) {
  uint64_t id = next_op_id_++;
  op->id = id;
  Operation& ref = *op;
  ops_.emplace(id, std::move(op));
  op_deadlines_.emplace(ref.deadline, id);
  ref.start(*this);
  reap(id);
  return id;
}

void Node::reap(uint64_t op_id) {
  auto it = ops_.find(op_id);
  if (it != ops_.end() && it->second->finished) ops_.erase(it);
}

void Node::shutdown() {
  auto ops = std::move(ops_);
  ops_.clear();
  for (auto& [id, op] : ops) {
    if (!op->finished) op->abort(*this, canceled_error("dht node is shutting down"));
  }
  pending_.clear();
  probes_in_flight_ = 0;
}

}  // namespace hivemind::dht
