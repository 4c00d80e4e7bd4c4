#!/usr/bin/env bash
# netns-hosts.sh: fake "hosts" with their own IP addresses on one machine, for multi-node tests.
#
#   slurm/ci/netns-hosts.sh up N      # N hosts: network namespaces <prefix>h1..<prefix>hN
#   slurm/ci/netns-hosts.sh down      # delete every namespace this script created
#   slurm/ci/netns-hosts.sh status
#
# Topology: a "switch" namespace <prefix>sw holding a bridge br0 (<subnet>.254/24) and one veth pair
# per host, one end in the host's namespace with <subnet>.<i>/24, the other attached to br0. Every
# host reaches every other and the switch; nothing is routed to the machine's real network. Enter a
# host with `nsenter --net=/run/netns/<prefix>h1 CMD` (not `ip netns exec`, which also remounts
# /sys and would hide what daemons like slurmd need).
#
# Variables: HIVEMIND_NETNS_PREFIX (default "hm"), HIVEMIND_NETNS_SUBNET (default 10.78.0, a block
# no real network here uses).
# Exit status 77 (the "skipped" code of automake and CTest's SKIP_RETURN_CODE) with the reason printed
# when network namespaces cannot be created here (not root, no CAP_NET_ADMIN, a sandbox that refuses).
set -u

prefix=${HIVEMIND_NETNS_PREFIX:-hm}
subnet=${HIVEMIND_NETNS_SUBNET:-10.78.0}
switch=${prefix}sw

log() { echo "netns-hosts.sh: $*" >&2; }
skip() {
  log "skipped: $*"
  exit 77
}

ours() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}(sw|h[0-9]+)$"; }

down() {
  local ns
  for ns in $(ours); do
    ip netns del "$ns" || log "could not delete namespace $ns"
  done
}

up() {
  local n=$1 i host
  case $n in ''|*[!0-9]*) log "up needs a number of hosts"; exit 2 ;; esac
  if [ "$n" -lt 1 ] || [ "$n" -gt 250 ]; then log "the number of hosts must be 1..250"; exit 2; fi
  command -v ip >/dev/null || skip "the ip command (iproute2) is not installed"
  [ "$(id -u)" = 0 ] || skip "network namespaces need root (running as $(id -un))"
  if [ -n "$(ours)" ]; then log "namespaces with prefix '$prefix' exist already; run '$0 down' first"; exit 1; fi
  local why
  if ! why=$(ip netns add "$switch" 2>&1); then skip "'ip netns add' is refused here: $why"; fi
  # From here on a failure is a real error; undo what was made.
  trap 'log "setup failed; removing the namespaces"; down; exit 1' ERR
  set -E
  ip -n "$switch" link set lo up
  ip -n "$switch" link add br0 type bridge
  ip -n "$switch" addr add "$subnet.254/24" dev br0
  ip -n "$switch" link set br0 up
  for i in $(seq 1 "$n"); do
    host=${prefix}h$i
    ip netns add "$host"
    # Created directly inside the two namespaces: no interface ever appears in the machine's own.
    ip link add name eth0 netns "$host" type veth peer name "p$i" netns "$switch"
    ip -n "$switch" link set "p$i" master br0 up
    ip -n "$host" addr add "$subnet.$i/24" dev eth0
    ip -n "$host" link set eth0 up
    ip -n "$host" link set lo up
  done
  trap - ERR
  for i in $(seq 1 "$n"); do echo "${prefix}h$i $subnet.$i /run/netns/${prefix}h$i"; done
  echo "${switch} $subnet.254 /run/netns/${switch}"
}

case ${1:-} in
  up) up "${2:-}" ;;
  down) down ;;
  status) ours || true ;;
  *) echo "usage: $0 up N | down | status" >&2; exit 2 ;;
esac
