#include <algorithm>
#include <unordered_map>

#include <hivemind/dht/lookup.h>

namespace hivemind::dht {

Lookup::Lookup(NodeId self, const std::vector<NodeId>& targets, Options options)
    : self_(self), options_(options), unfinished_(targets.size()) {
  options_.alpha = std::max<size_t>(options_.alpha, 1);
  options_.beta = std::max<size_t>(options_.beta, 1);
  options_.max_candidates = std::max(options_.max_candidates, options_.beta + options_.alpha);
  targets_.reserve(targets.size());
  for (const auto& id : targets)
    targets_.push_back(Target{id, {}, 0, options_.beta, false});
}

Lookup::Candidate* Lookup::find(Target& target, const NodeId& peer) {
  auto it = target.candidates.find(peer.distance(target.id));
  return it == target.candidates.end() ? nullptr : &it->second;
}

void Lookup::insert(Target& target, const Contact& contact, int depth) {
  NodeId distance = contact.id.distance(target.id);
  if (target.candidates.count(distance)) return;
  if (target.candidates.size() >= options_.max_candidates) {
    // Full: make room by dropping the farthest candidate that nobody waits on, if it is farther.
    auto victim = target.candidates.end();
    for (auto it = target.candidates.rbegin(); it != target.candidates.rend(); ++it) {
      if (it->second.state == State::kCandidate || it->second.state == State::kFailed) {
        victim = std::prev(it.base());
        break;
      }
    }
    if (victim == target.candidates.end() || !(distance < victim->first)) return;
    target.candidates.erase(victim);
  }
  target.candidates.emplace(distance, Candidate{contact, State::kCandidate, depth});
}

void Lookup::add_candidates(uint32_t target, std::span<const Contact> contacts) {
  Target& t = targets_[target];
  for (const auto& contact : contacts) {
    if (contact.id != self_) insert(t, contact, 1);
  }
}

void Lookup::add_self(const Contact& self) {
  for (auto& target : targets_) {
    target.candidates[self.id.distance(target.id)] = Candidate{self, State::kResponded, 0};
  }
}

void Lookup::evaluate(Target& target) {
  if (target.done) return;
  size_t answered = 0;
  bool stalled = false;
  for (const auto& [distance, candidate] : target.candidates) {
    if (candidate.state == State::kFailed) continue;
    if (candidate.stalled) {
      stalled = true;  // skipped, unless nothing else is left (below)
      continue;
    }
    if (candidate.state != State::kResponded) return;
    if (++answered == target.beta) break;
  }
  // Fewer live candidates than beta: wait for the stalled ones, whose answers may name more.
  if (answered < target.beta && stalled) return;
  // The beta closest live candidates answered, or every live candidate did (a small network).
  target.done = true;
  --unfinished_;
}

std::vector<Lookup::Request> Lookup::next_requests(
    const std::function<bool(const Contact&)>& usable) {
  // Pass 1: every unfinished target names the candidates it wants asked, within its alpha budget.
  std::unordered_map<NodeId, size_t, NodeIdHash> slot;  // peer -> index in `wanted`
  std::vector<Request> wanted;
  for (uint32_t t = 0; t < targets_.size(); ++t) {
    Target& target = targets_[t];
    evaluate(target);  // seeding does not evaluate: a half-seeded target could look finished
    if (target.done || target.in_flight >= options_.alpha) continue;
    size_t window = std::max(options_.alpha, target.beta);
    size_t budget = options_.alpha - target.in_flight;
    size_t position = 0;
    bool failed_any = false;
    for (auto& [distance, candidate] : target.candidates) {
      if (budget == 0 || position >= window) break;
      if (candidate.state == State::kFailed || candidate.stalled) continue;
      ++position;
      if (candidate.state != State::kCandidate) continue;
      if (!usable(candidate.contact)) {
        candidate.state = State::kFailed;
        failed_any = true;
        --position;  // a failed candidate frees its place in the window
        continue;
      }
      auto [it, inserted] = slot.try_emplace(candidate.contact.id, wanted.size());
      if (inserted) wanted.push_back(Request{candidate.contact, {}});
      wanted[it->second].targets.push_back(t);
      --budget;
    }
    if (failed_any) evaluate(target);
  }
  // Pass 2: the peers most targets want go first, up to the cap on requests in flight.
  std::stable_sort(wanted.begin(), wanted.end(), [](const Request& a, const Request& b) {
    return a.targets.size() > b.targets.size();
  });
  std::vector<Request> out;
  for (auto& request : wanted) {
    for (size_t begin = 0; begin < request.targets.size(); begin += options_.max_keys_per_request) {
      if (requests_in_flight_ >= options_.max_requests_in_flight) return out;
      size_t end = std::min(request.targets.size(), begin + options_.max_keys_per_request);
      Request chunk{request.peer,
                    {request.targets.begin() + static_cast<std::ptrdiff_t>(begin),
                     request.targets.begin() + static_cast<std::ptrdiff_t>(end)}};
      for (uint32_t t : chunk.targets) {
        Target& target = targets_[t];
        find(target, request.peer.id)->state = State::kInFlight;
        ++target.in_flight;
      }
      ++requests_in_flight_;
      out.push_back(std::move(chunk));
    }
  }
  return out;
}

void Lookup::on_response(const NodeId& peer, std::span<const uint32_t> targets,
                         std::span<const std::vector<Contact>> contacts) {
  if (requests_in_flight_ > 0) --requests_in_flight_;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] >= targets_.size()) continue;
    Target& target = targets_[targets[i]];
    Candidate* candidate = find(target, peer);
    if (!candidate || candidate->state != State::kInFlight) continue;
    candidate->state = State::kResponded;
    if (!candidate->stalled) --target.in_flight;
    candidate->stalled = false;
    int depth = candidate->depth + 1;
    if (i < contacts.size()) {
      for (const auto& contact : contacts[i]) {
        if (contact.id != self_) insert(target, contact, depth);
      }
    }
    evaluate(target);
  }
}

void Lookup::on_failure(const NodeId& peer, std::span<const uint32_t> targets) {
  if (requests_in_flight_ > 0) --requests_in_flight_;
  for (uint32_t t : targets) {
    if (t >= targets_.size()) continue;
    Target& target = targets_[t];
    Candidate* candidate = find(target, peer);
    if (!candidate || candidate->state != State::kInFlight) continue;
    candidate->state = State::kFailed;
    if (!candidate->stalled) --target.in_flight;
    candidate->stalled = false;
    evaluate(target);
  }
}

void Lookup::on_stall(const NodeId& peer, std::span<const uint32_t> targets) {
  for (uint32_t t : targets) {
    if (t >= targets_.size()) continue;
    Target& target = targets_[t];
    Candidate* candidate = find(target, peer);
    if (!candidate || candidate->state != State::kInFlight || candidate->stalled) continue;
    candidate->stalled = true;
    --target.in_flight;
    evaluate(target);
  }
}

void Lookup::reopen(uint32_t target, size_t beta) {
  Target& t = targets_[target];
  t.beta = std::max<size_t>(beta, 1);
  if (t.done) {
    t.done = false;
    ++unfinished_;
  }
  evaluate(t);
}

std::vector<Contact> Lookup::responded(uint32_t target, size_t count) const {
  std::vector<Contact> out;
  for (const auto& [distance, candidate] : targets_[target].candidates) {
    if (out.size() >= count) break;
    if (candidate.state == State::kResponded) out.push_back(candidate.contact);
  }
  return out;
}

int Lookup::depth(uint32_t target, const NodeId& peer) const {
  const Target& t = targets_[target];
  auto it = t.candidates.find(peer.distance(t.id));
  return it == t.candidates.end() ? -1 : it->second.depth;
}

Lookup::State Lookup::state(uint32_t target, const NodeId& peer) const {
  const Target& t = targets_[target];
  auto it = t.candidates.find(peer.distance(t.id));
  return it == t.candidates.end() ? State::kFailed : it->second.state;
}

}  // namespace hivemind::dht
