#!/usr/bin/env bash
# srun-wrap.sh: runs one rank of a hivemind-cpp job under any launcher.
#
#   srun -n 8 slurm/srun-wrap.sh --log-dir logs build/bin/hivemind-server ...
#   mpirun -np 4 slurm/srun-wrap.sh build/tests/moe_swarm_test
#
# What it does before it runs PROGRAM (the exit status is PROGRAM's; 128+N when a signal N ended it):
#   1. Maps the launcher's variables to ours (read back by hivemind::read_launch_info()):
#        HIVEMIND_RANK  HIVEMIND_WORLD_SIZE  HIVEMIND_LOCAL_RANK  HIVEMIND_NODE_RANK
#      from OpenMPI (OMPI_COMM_WORLD_*), then PMIx (PMIX_RANK with the SLURM_* sizes), then Slurm
#      (SLURM_PROCID, SLURM_STEP_NUM_TASKS or SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID). The launcher's
#      values win over HIVEMIND_* inherited from a parent (a batch script that itself ran under a wrapper);
#      with no launcher, inherited HIVEMIND_* stay, else 0/1/0/0. Also sets HIVEMIND_LAUNCHER
#      (openmpi|pmix|slurm|none) and HIVEMIND_NODE_ADDR (this node's address: the IPv4 address of
#      HIVEMIND_IFACE when set, else the first address of `hostname -I`, else the host name) unless set.
#      Under OpenMPI the node rank is rank / OMPI_COMM_WORLD_LOCAL_SIZE: exact for mpirun's default
#      by-slot mapping with equal ranks per node (OMPI_COMM_WORLD_NODE_RANK is a per-node rank, not a
#      node index).
#   2. With --log-dir DIR (or HIVEMIND_LOG_DIR), sends the program's stdout and stderr to
#      DIR/<job>.<step>.<rank>.log (job: SLURM_JOB_ID, else OpenMPI's job id, else "local"; step:
#      SLURM_STEP_ID, else 0), and exports its path as HIVEMIND_RANK_LOG. Rank 0 also keeps writing to
#      the wrapper's own stdout (the job's output file), unless --no-tee. Logs are appended to.
#   3. Signals. Under srun and mpirun the launcher signals every process of the task itself (Slurm's
#      proctrack plugins signal the task's process group or cgroup; mpirun its process group), so a
#      wrapper that forwarded would deliver each signal twice: there the wrapper execs the program,
#      which then is the task. Elsewhere (a plain shell, a batch script, torchrun) it runs the program
#      as its child, forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to it, never dies of them
#      itself, and exits with the child's status. --forward-signals auto (default) chooses this way;
#      yes / no force it (no = exec).
#   4. With --bind-gpu (or HIVEMIND_BIND_GPU=1): one GPU per local rank. When CUDA_VISIBLE_DEVICES lists
#      several devices it keeps the one at position LOCAL_RANK % count; when it is unset it becomes
#      LOCAL_RANK; a single device (Slurm's --gpus-per-task binding) is left alone.
#   HIVEMIND_WRAP_VERBOSE=1 prints the mapping and these decisions to stderr before the program starts.
#
# Exit status 2: bad usage or a malformed launcher variable (the message names it).
set -u

usage() {
  sed -n '2,4p' "$0" >&2
  echo "usage: srun-wrap.sh [--log-dir DIR] [--no-tee] [--forward-signals auto|yes|no] [--bind-gpu] [--] PROGRAM [ARGS...]" >&2
  exit 2
}
fail() {
  echo "srun-wrap.sh: $*" >&2
  exit 2
}

log_dir=${HIVEMIND_LOG_DIR:-}
tee_rank0=1
forward=${HIVEMIND_FORWARD_SIGNALS:-auto}
bind_gpu=${HIVEMIND_BIND_GPU:-0}
while [ $# -gt 0 ]; do
  case $1 in
    --log-dir) [ $# -ge 2 ] || usage; log_dir=$2; shift 2 ;;
    --log-dir=*) log_dir=${1#--log-dir=}; shift ;;
    --no-tee) tee_rank0=0; shift ;;
    --forward-signals) [ $# -ge 2 ] || usage; forward=$2; shift 2 ;;
    --forward-signals=*) forward=${1#--forward-signals=}; shift ;;
    --bind-gpu) bind_gpu=1; shift ;;
    --help|-h) usage ;;
    --) shift; break ;;
    -*) fail "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
case $forward in auto|yes|no) ;; *) fail "--forward-signals must be auto, yes or no (got '$forward')" ;; esac

# pick OUT DEFAULT NAME...: sets OUT to the first of the named variables that is set, validated as a
# non-negative integer (a malformed value fails, naming the variable), or to DEFAULT when none is set.
pick() {
  local out=$1 default=$2 name value
  shift 2
  for name in "$@"; do
    [ -n "${!name+x}" ] || continue
    value=${!name}
    case $value in
      ''|*[!0-9]*) fail "environment variable $name='$value' is not a non-negative integer" ;;
    esac
    printf -v "$out" '%d' "$((10#$value))"
    return
  done
  printf -v "$out" '%d' "$default"
}

rank=0 world=1 local_rank=0 node_rank=0 local_size=0
launcher=none
if [ -n "${OMPI_COMM_WORLD_RANK+x}" ]; then
  launcher=openmpi
  pick rank 0 OMPI_COMM_WORLD_RANK
  pick world 1 OMPI_COMM_WORLD_SIZE
  pick local_rank 0 OMPI_COMM_WORLD_LOCAL_RANK
  pick local_size 0 OMPI_COMM_WORLD_LOCAL_SIZE
  [ "$local_size" -gt 0 ] && node_rank=$((rank / local_size))
elif [ -n "${PMIX_RANK+x}" ]; then
  launcher=pmix
  pick rank 0 PMIX_RANK
  pick world 1 SLURM_STEP_NUM_TASKS SLURM_NTASKS
  pick local_rank 0 SLURM_LOCALID
  pick node_rank 0 SLURM_NODEID
elif [ -n "${SLURM_PROCID+x}" ]; then
  launcher=slurm
  pick rank 0 SLURM_PROCID
  # Inside a step SLURM_STEP_NUM_TASKS is the step's size; SLURM_NTASKS is the job's.
  pick world 1 SLURM_STEP_NUM_TASKS SLURM_NTASKS
  pick local_rank 0 SLURM_LOCALID
  pick node_rank 0 SLURM_NODEID
else
  pick rank 0 HIVEMIND_RANK
  pick world 1 HIVEMIND_WORLD_SIZE
  pick local_rank 0 HIVEMIND_LOCAL_RANK
  pick node_rank 0 HIVEMIND_NODE_RANK
fi
[ "$world" -ge 1 ] || fail "world size $world from $launcher is below 1"
[ "$rank" -lt "$world" ] || fail "rank $rank from $launcher is not below the world size $world"
export HIVEMIND_RANK=$rank HIVEMIND_WORLD_SIZE=$world HIVEMIND_LOCAL_RANK=$local_rank \
  HIVEMIND_NODE_RANK=$node_rank HIVEMIND_LAUNCHER=$launcher

node_addr() {
  local addr=""
  if [ -n "${HIVEMIND_IFACE:-}" ]; then
    addr=$(ip -4 -o addr show dev "$HIVEMIND_IFACE" 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
    [ -n "$addr" ] || fail "HIVEMIND_IFACE=$HIVEMIND_IFACE has no IPv4 address on $(hostname)"
  else
    addr=$(hostname -I 2>/dev/null | awk '{print $1}')
  fi
  [ -n "$addr" ] || addr=$(hostname)
  echo "$addr"
}
if [ -z "${HIVEMIND_NODE_ADDR:-}" ]; then
  HIVEMIND_NODE_ADDR=$(node_addr) || exit 2
  export HIVEMIND_NODE_ADDR
fi

if [ "$bind_gpu" = 1 ]; then
  if [ -z "${CUDA_VISIBLE_DEVICES+x}" ]; then
    export CUDA_VISIBLE_DEVICES=$local_rank
  else
    IFS=, read -r -a devices <<<"$CUDA_VISIBLE_DEVICES"
    if [ "${#devices[@]}" -gt 1 ]; then
      export CUDA_VISIBLE_DEVICES=${devices[$((local_rank % ${#devices[@]}))]}
    fi
  fi
fi

tee_pid=""
unset HIVEMIND_RANK_LOG
if [ -n "$log_dir" ]; then
  mkdir -p "$log_dir" || fail "cannot create log directory $log_dir"
  job=${SLURM_JOB_ID:-${OMPI_MCA_ess_base_jobid:-local}}
  log_file=$log_dir/$job.${SLURM_STEP_ID:-0}.$rank.log
  : >>"$log_file" || fail "cannot write log file $log_file"
  export HIVEMIND_RANK_LOG=$log_file
  if [ "$rank" = 0 ] && [ "$tee_rank0" = 1 ]; then
    # tee ignores the job's signals (ignored dispositions survive exec): if Slurm's SIGTERM killed it,
    # the child's last words, the ones that explain the shutdown, would be lost.
    exec > >(trap '' TERM INT HUP USR1 USR2; exec tee -a "$log_file") 2>&1
    tee_pid=$!
  else
    exec >>"$log_file" 2>&1
  fi
fi

if [ "$forward" = auto ]; then
  forward=yes
  # srun tasks (SLURM_STEP_ID is set in steps only, not in the batch shell) and mpirun ranks.
  if [ -n "${SLURM_STEP_ID+x}" ] || [ "$launcher" = openmpi ]; then forward=no; fi
fi

if [ "${HIVEMIND_WRAP_VERBOSE:-0}" = 1 ]; then
  echo "srun-wrap.sh: rank $rank/$world local $local_rank node $node_rank ($launcher)," \
    "forward signals: $forward, log: ${HIVEMIND_RANK_LOG:-none}" >&2
fi

have_default_signal=0
env --default-signal=INT true 2>/dev/null && have_default_signal=1

# Under a launcher that signals the whole task, the wrapper steps aside: the program replaces it
# (exec), gets each signal exactly once from the launcher, and its exit status is the task's. Not when
# rank 0 tees its output: the wrapper must then stay to let tee finish writing after the program exits
# (at the end of a step Slurm kills what is left of the task). It ignores the signals instead of
# trapping them, so its wait for the program is never interrupted and always yields the program's
# status; the program gets the default dispositions back through env --default-signal.
if [ "$forward" = no ]; then
  if [ -z "$tee_pid" ]; then exec "$@"; fi
  if [ "$have_default_signal" = 1 ]; then
    trap '' TERM INT HUP USR1 USR2
    env --default-signal=TERM,INT,HUP,USR1,USR2,QUIT "$@" <&0 &
    wait "$!"
    status=$?
    exec >&- 2>&-
    wait "$tee_pid" 2>/dev/null
    exit "$status"
  fi
fi

child=""
# shellcheck disable=SC2317  # invoked by the traps below
on_signal() {
  if [ "$forward" = yes ] && [ -n "$child" ]; then kill -s "$1" "$child" 2>/dev/null; fi
}
for sig in TERM INT HUP USR1 USR2; do
  # shellcheck disable=SC2064  # expand $sig now, once per trap
  trap "on_signal $sig" "$sig"
done

# A background job of a non-interactive shell starts with SIGINT and SIGQUIT ignored and stdin from
# /dev/null; restore both so the child behaves as if run directly (env --default-signal: coreutils 8.31+).
if [ "$have_default_signal" = 1 ]; then
  env --default-signal=INT,QUIT "$@" <&0 &
else
  "$@" <&0 &
fi
child=$!

# `wait` returns early (status > 128) whenever a trapped signal arrives; keep waiting while the child
# lives. When forwarding, the signal reaches the child only through on_signal, after the interrupted
# wait, so the child is normally still running then; should it have exited just before, one more
# `wait` returns its status (bash keeps it; an old bash answers 127 or 255 and we keep what we have).
while :; do
  wait "$child"
  status=$?
  [ "$status" -gt 128 ] || break
  if kill -0 "$child" 2>/dev/null; then continue; fi
  wait "$child"
  again=$?
  case $again in 127|255) ;; *) status=$again ;; esac
  break
done

if [ -n "$tee_pid" ]; then
  exec >&- 2>&-  # tee sees EOF, writes what is left, exits
  wait "$tee_pid" 2>/dev/null
fi
exit "$status"
