#!/usr/bin/env bash
# stop-local-cluster.sh: stops a cluster made by start-local-cluster.sh and removes its state.
#
#   slurm/ci/stop-local-cluster.sh [DIR] [--keep]
#
# DIR defaults to the directory of $SLURM_CONF. Order matters: cancel every job, wait until squeue
# is empty (a slurmstepd can outlive `scontrol shutdown` by about a second otherwise), shut the
# daemons down, wait for their PIDs (SIGTERM, then SIGKILL, to those PIDs only, if they overstay),
# delete the network namespaces of a --netns cluster, remove DIR (unless --keep).
set -u

dir=""
keep=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    -*) echo "usage: $0 [DIR] [--keep]" >&2; exit 2 ;;
    *) dir=$arg ;;
  esac
done
[ -n "$dir" ] || dir=$(dirname "${SLURM_CONF:-}")
log() { echo "stop-local-cluster.sh: $*" >&2; }
if [ -z "$dir" ] || [ ! -f "$dir/cluster.env" ]; then
  log "no cluster state in '$dir' (give the directory, or export SLURM_CONF)"
  exit 1
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER_PIDS="" CLUSTER_NETNS=0 CLUSTER_NETNS_SWITCH=""
# shellcheck source=/dev/null
. "$dir/cluster.env"
export SLURM_CONF=$dir/slurm.conf
client=()
[ -n "$CLUSTER_NETNS_SWITCH" ] && [ -e "$CLUSTER_NETNS_SWITCH" ] && client=(nsenter --net="$CLUSTER_NETNS_SWITCH")

alive() {
  local pid
  for pid in $CLUSTER_PIDS; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
# Polls `$@` until it succeeds or about $1/4 seconds pass.
wait_until() {
  local tries=$1
  shift
  while [ "$tries" -gt 0 ]; do
    "$@" && return 0
    sleep 0.25
    tries=$((tries - 1))
  done
  return 1
}
queue_empty() { [ -z "$(timeout 5 "${client[@]}" squeue -h -o %i 2>/dev/null)" ]; }
stopped() { ! alive; }

if alive; then
  timeout 10 "${client[@]}" scancel --user="$(id -un)" 2>/dev/null
  wait_until 60 queue_empty || log "jobs still listed after 15 s; shutting down anyway"
  timeout 10 "${client[@]}" scontrol shutdown >/dev/null 2>&1
  if ! wait_until 40 stopped; then
    log "daemons still running after 10 s; sending SIGTERM to $CLUSTER_PIDS"
    for pid in $CLUSTER_PIDS; do kill -TERM "$pid" 2>/dev/null; done
    if ! wait_until 20 stopped; then
      for pid in $CLUSTER_PIDS; do kill -KILL "$pid" 2>/dev/null; done
    fi
  fi
fi
if [ "$CLUSTER_NETNS" != 0 ]; then "$here/netns-hosts.sh" down; fi
if [ "$keep" = 0 ]; then
  rm -rf -- "$dir"
  log "stopped; removed $dir"
else
  log "stopped; state kept in $dir"
fi
