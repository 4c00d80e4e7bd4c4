#!/usr/bin/env bash
# start-local-cluster.sh: a real, private Slurm on this one machine, for CI and for trying the templates.
#
#   eval "$(slurm/ci/start-local-cluster.sh)"        # prints the variables to export, on stdout
#   srun -n4 hostname; sbatch --wait job.sh
#   slurm/ci/stop-local-cluster.sh                   # finds the cluster through SLURM_CONF
#
# One slurmctld and one slurmd (node name `hostname -s`, CPUs=8 advertised on any machine through
# SlurmdParameters=config_overrides), AuthType=auth/none and CredType=cred/none (no munge, no
# systemd), every file under a private state directory, ports above 16000 so a system Slurm is left
# alone. Both daemons run in the foreground mode (-D) but detached from this shell; their PIDs are
# kept in <dir>/cluster.env for the stop script. Ready when `srun -n1 true` succeeds (polled every
# 0.25 s, at most 40 tries); a cluster that does not come up is torn down and its logs printed.
#
# Options:
#   --dir DIR     state directory (default: a new mktemp -d /tmp/hivemind-slurm.XXXXXX); must be empty
#   --port P      slurmctld port, slurmd uses P+1 (default $HIVEMIND_SLURM_PORT or 16817)
#   --cpus N      CPUs each node advertises (default 8)
#   --netns N     N nodes h1..hN, each slurmd in its own network namespace with its own IP (see
#                 netns-hosts.sh; slurmctld in the switch namespace). Client commands must then run
#                 there: nsenter --net="$HIVEMIND_SLURM_NETNS" srun ... (printed as well). Exit 77
#                 (skipped) where namespaces are not permitted.
# Needs root (SlurmUser=root) and Debian's slurmctld, slurmd and slurm-client (22.05, which still
# ships auth/none); exit 77 (skipped) when they are missing.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=""
port=${HIVEMIND_SLURM_PORT:-16817}
cpus=8
netns=0
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --netns) netns=$2; shift 2 ;;
    *) echo "usage: $0 [--dir DIR] [--port P] [--cpus N] [--netns N]" >&2; exit 2 ;;
  esac
done

log() { echo "start-local-cluster.sh: $*" >&2; }
for tool in slurmctld slurmd srun scontrol; do
  if ! command -v "$tool" >/dev/null; then
    log "skipped: $tool is not installed (apt-get install slurmctld slurmd slurm-client)"
    exit 77
  fi
done
[ "$(id -u)" = 0 ] || { log "skipped: needs root (SlurmUser=root)"; exit 77; }

if [ -z "$dir" ]; then
  dir=$(mktemp -d /tmp/hivemind-slurm.XXXXXX)
elif [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  log "--dir $dir is not empty"
  exit 2
fi
mkdir -p "$dir"/{state,spool,log,pmixtmp}
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
host=$(hostname -s)

ns_switch=""
client=()  # prefix for client commands (srun, squeue, ...)
if [ "$netns" != 0 ]; then
  out=$("$here/netns-hosts.sh" up "$netns")
  rc=$?
  if [ $rc -ne 0 ]; then rm -rf "$dir"; exit $rc; fi
  ns_switch=$(awk '$1 ~ /sw$/ {print $3}' <<<"$out")
  ctld_addr=$(awk '$1 ~ /sw$/ {print $2}' <<<"$out")
  client=(nsenter --net="$ns_switch")
else
  ctld_addr=127.0.0.1
fi

# The controller's name must be this machine's short host name, else slurmctld refuses to start
# ("This host not a valid controller").
cat >"$conf" <<EOF
ClusterName=hivemind-ci
SlurmctldHost=$host($ctld_addr)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/ctld.pid
SlurmdPidFile=$dir/d-%n.pid
SlurmctldLogFile=$dir/log/ctld.log
SlurmdLogFile=$dir/log/d-%n.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
TmpFS=$dir/pmixtmp
EOF
if [ "$netns" != 0 ]; then
  while read -r name addr _; do
    [[ $name == *sw ]] && continue
    echo "NodeName=h${name##*h} NodeAddr=$addr CPUs=$cpus RealMemory=4000" >>"$conf"
  done <<<"$out"
else
  echo "NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=4000" >>"$conf"
fi
echo "PartitionName=ci Nodes=ALL Default=YES MaxTime=30 State=UP OverSubscribe=YES" >>"$conf"
export SLURM_CONF=$conf

# Detached (setsid, stdin from /dev/null, output to files) so that `$(start-local-cluster.sh)` returns
# and a CI step's end or a Ctrl-C in this terminal does not reach the daemons.
pids=()
setsid "${client[@]}" slurmctld -D -i </dev/null >>"$dir/log/ctld.out" 2>&1 &
pids+=($!)
if [ "$netns" != 0 ]; then
  while read -r name _ path; do
    [[ $name == *sw ]] && continue
    node=h${name##*h}
    # Each node gets its own private TmpFS for PMIx (a shared one makes srun --mpi=pmix fail with
    # "pmixp_mkdir: File exists").
    setsid nsenter --net="$path" unshare -m --propagation private \
      sh -c "mount -t tmpfs tmpfs '$dir/pmixtmp' && exec slurmd -D -N $node" \
      </dev/null >>"$dir/log/d-$node.out" 2>&1 &
    pids+=($!)
  done <<<"$out"
else
  setsid slurmd -D </dev/null >>"$dir/log/d-$host.out" 2>&1 &
  pids+=($!)
fi

cat >"$dir/cluster.env" <<EOF
# Written by start-local-cluster.sh; read by stop-local-cluster.sh.
CLUSTER_DIR=$dir
CLUSTER_PIDS="${pids[*]}"
CLUSTER_NETNS=$netns
CLUSTER_NETNS_SWITCH=$ns_switch
EOF

nodes=1
[ "$netns" != 0 ] && nodes=$netns
ready=0
for _ in $(seq 1 40); do
  if timeout 10 "${client[@]}" srun -N "$nodes" -n "$nodes" true >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.25
done
if [ $ready != 1 ]; then
  log "the cluster did not become ready; logs:"
  for f in "$dir"/log/*; do echo "==> $f" >&2; tail -n 30 "$f" >&2; done
  "$here/stop-local-cluster.sh" "$dir" >&2
  exit 1
fi
log "ready: $nodes node(s), state in $dir"
echo "export SLURM_CONF=$conf"
if [ "$netns" != 0 ]; then echo "export HIVEMIND_SLURM_NETNS=$ns_switch"; fi
