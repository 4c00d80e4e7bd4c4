# swarm-lib.sh: shared by the sbatch templates in slurm/templates (sourced, not run).
#
# sbatch runs a copy of the script from its spool directory, so a template cannot find this file
# through $0: it asks the job record where the submitted script is (swarm-find.sh, which sets
# SWARM_SLURM_DIR, the slurm/ directory holding templates/, lib/ and srun-wrap.sh) and sources this
# file from there. The same templates work in a source tree (programs in ../build/bin) and
# installed by `cmake --install` (share/hivemind/slurm; programs in the prefix's bin/, as
# lib/installed-bin-dir says).
#
# Every knob is an environment variable with a default (set them before sbatch, or with
# sbatch --export=ALL,NAME=value); see the header of each template and docs/slurm.md.
# shellcheck shell=bash

swarm_die() {
  echo "$(date '+%F %T') swarm: error: $*" >&2
  exit 1
}
swarm_log() { echo "$(date '+%F %T') swarm: $*" >&2; }

# The options a template takes after its name (sbatch TEMPLATE [OPTIONS]), each the same as a
# variable: --trainer-cmd CMD (SWARM_TRAINER_CMD), --trainer-args ARGS, --expert-args ARGS,
# --server-args ARGS, --dht-args ARGS.
swarm_parse_args() {
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || swarm_die "option $1 needs a value"
    case $1 in
      --trainer-cmd) SWARM_TRAINER_CMD=$2 ;;
      --trainer-args) SWARM_TRAINER_ARGS=$2 ;;
      --expert-args) SWARM_EXPERT_ARGS=$2 ;;
      --server-args) SWARM_SERVER_ARGS=$2 ;;
      --dht-args) SWARM_DHT_ARGS=$2 ;;
      *) swarm_die "unknown option '$1' (the templates take --trainer-cmd, --trainer-args, --expert-args, --server-args and --dht-args)" ;;
    esac
    shift 2
  done
}

# The programs' directory when HIVEMIND_BIN is not set: bin/ of the installed prefix (the path
# relative to SWARM_SLURM_DIR is written at install time), else the source tree's build/bin.
swarm_default_bin() {
  if [ -f "$SWARM_SLURM_DIR/lib/installed-bin-dir" ]; then
    (cd "$SWARM_SLURM_DIR" && cd "$(cat lib/installed-bin-dir)" && pwd)
  else
    echo "$HIVEMIND_HOME/build/bin"
  fi
}

# Fills in the defaults, checks the programs exist, creates the run directories. Exports everything
# the per-task launcher (slurm/lib/run-role.sh) reads. Arguments: the programs the template runs
# from HIVEMIND_BIN; "trainer" stands for the trainer command (SWARM_TRAINER_CMD, default
# hivemind-demo).
swarm_init() {
  [ -n "${SLURM_JOB_ID:-}" ] || swarm_die "not inside a Slurm job (submit with sbatch)"
  export HIVEMIND_BIN=${HIVEMIND_BIN:-$(swarm_default_bin)}
  export SWARM_RUN_DIR=${SWARM_RUN_DIR:-${SLURM_SUBMIT_DIR:-$PWD}/.hivemind/$SLURM_JOB_ID}
  export HIVEMIND_LOG_DIR=${HIVEMIND_LOG_DIR:-$SWARM_RUN_DIR/logs}
  export SWARM_BOOTSTRAP_FILE=${SWARM_BOOTSTRAP_FILE:-$SWARM_RUN_DIR/bootstrap.addr}
  export SWARM_BOOTSTRAP_TIMEOUT=${SWARM_BOOTSTRAP_TIMEOUT:-120}
  export SWARM_DHT_PORT=${SWARM_DHT_PORT:-31337}
  export SWARM_SERVER_PORT=${SWARM_SERVER_PORT:-31400}
  export SWARM_EXPERT_CLS=${SWARM_EXPERT_CLS:-ffn}
  export SWARM_HIDDEN_DIM=${SWARM_HIDDEN_DIM:-1024}
  # The expert options whole (e.g. "--expert_cls torchscript --module_path expert.pt"); by default
  # built from the two variables above.
  export SWARM_EXPERT_ARGS=${SWARM_EXPERT_ARGS:-"--expert_cls $SWARM_EXPERT_CLS --hidden_dim $SWARM_HIDDEN_DIM"}
  local default_pattern='expert.{rank}.[0:4]'
  export SWARM_EXPERT_PATTERN=${SWARM_EXPERT_PATTERN:-$default_pattern}
  export SWARM_CHECKPOINT_DIR=${SWARM_CHECKPOINT_DIR:-${SLURM_SUBMIT_DIR:-$PWD}/checkpoints}
  export SWARM_STEPS=${SWARM_STEPS:-1000}
  export SWARM_GPUS_PER_SERVER=${SWARM_GPUS_PER_SERVER:-0}
  export SWARM_SERVER_WARMUP=${SWARM_SERVER_WARMUP:-10}
  export SWARM_GRACE=${SWARM_GRACE:-60}
  export SWARM_DHT_ARGS=${SWARM_DHT_ARGS:-} SWARM_SERVER_ARGS=${SWARM_SERVER_ARGS:-}
  export SWARM_TRAINER_ARGS=${SWARM_TRAINER_ARGS:-} SWARM_TRAINER_CMD=${SWARM_TRAINER_CMD:-}
  # Read by the templates that source this file.
  # shellcheck disable=SC2034
  SWARM_WRAP=$SWARM_SLURM_DIR/srun-wrap.sh
  # shellcheck disable=SC2034
  SWARM_ROLE=$SWARM_SLURM_DIR/lib/run-role.sh
  [ -x "$SWARM_WRAP" ] || swarm_die "$SWARM_WRAP not found: set HIVEMIND_HOME to the hivemind-cpp tree"
  local program trainer
  for program in "$@"; do
    if [ "$program" = trainer ] && [ -n "$SWARM_TRAINER_CMD" ]; then
      # The command's first word, looked up as run-role.sh will: HIVEMIND_BIN first, then PATH.
      read -r trainer _ <<<"$SWARM_TRAINER_CMD"
      (PATH=$HIVEMIND_BIN:$PATH && command -v "$trainer" >/dev/null) ||
        swarm_die "trainer command '$trainer' (SWARM_TRAINER_CMD) is neither in $HIVEMIND_BIN nor on PATH"
      continue
    fi
    [ "$program" = trainer ] && program=hivemind-demo
    [ -x "$HIVEMIND_BIN/$program" ] || swarm_die "$HIVEMIND_BIN/$program not found: build it, or set HIVEMIND_BIN"
  done
  mkdir -p "$SWARM_RUN_DIR" "$HIVEMIND_LOG_DIR" "$(dirname "$SWARM_BOOTSTRAP_FILE")" ||
    swarm_die "cannot create $SWARM_RUN_DIR"
  swarm_log "job $SLURM_JOB_ID on $SLURM_JOB_NODELIST; logs in $HIVEMIND_LOG_DIR"
}

# The first node of the allocation (the batch shell runs there).
swarm_head_node() { scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1; }

# Waits for the bootstrap file (written atomically by hivemind-dht once it listens) and exports its
# addresses as SWARM_PEERS. Gives up after SWARM_BOOTSTRAP_TIMEOUT seconds, or at once when the
# process given as $1 (the DHT's srun) has exited.
swarm_wait_bootstrap() {
  local watch=${1:-} waited=0 limit=$((SWARM_BOOTSTRAP_TIMEOUT * 4))
  while [ ! -s "$SWARM_BOOTSTRAP_FILE" ]; do
    if [ -n "$watch" ] && ! kill -0 "$watch" 2>/dev/null; then
      swarm_die "the DHT step exited before writing $SWARM_BOOTSTRAP_FILE (see $HIVEMIND_LOG_DIR)"
    fi
    [ "$waited" -lt "$limit" ] ||
      swarm_die "no bootstrap file $SWARM_BOOTSTRAP_FILE after ${SWARM_BOOTSTRAP_TIMEOUT}s: is the DHT" \
        "job running, and is this path on a filesystem every node shares?"
    sleep 0.25
    waited=$((waited + 1))
  done
  SWARM_PEERS=$(grep -v '^[[:space:]]*#' "$SWARM_BOOTSTRAP_FILE" | tr -s ' \n' ' ')
  SWARM_PEERS=${SWARM_PEERS% }
  SWARM_PEERS=${SWARM_PEERS# }
  [ -n "$SWARM_PEERS" ] || swarm_die "bootstrap file $SWARM_BOOTSTRAP_FILE holds no address"
  export SWARM_PEERS
  swarm_log "bootstrap peers: $SWARM_PEERS"
}

# The id ("job.step") of this job's step named $1, empty when it is not running.
swarm_step_id() {
  squeue -s -j "$SLURM_JOB_ID" -h -o '%i %j' 2>/dev/null | awk -v name="$1" '$2 == name {print $1; exit}'
}

# Stops the step named $1 whose srun has PID $2 the way servers expect: SIGTERM to its tasks
# (drain, checkpoint, exit), then a hard cancel when it is still there after SWARM_GRACE seconds.
# Killing srun itself would not do: srun answers SIGTERM by killing its tasks at once.
swarm_stop_step() {
  local name=$1 pid=$2 id waited=0
  kill -0 "$pid" 2>/dev/null || return 0
  id=$(swarm_step_id "$name")
  if [ -n "$id" ]; then
    swarm_log "stopping step $name ($id): SIGTERM, grace ${SWARM_GRACE}s"
    scancel --signal=TERM "$id"
  fi
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((SWARM_GRACE * 4)) ]; do
    sleep 0.25
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    swarm_log "step $name did not exit within ${SWARM_GRACE}s; cancelling it"
    [ -n "$id" ] && scancel "$id"
  fi
  wait "$pid" 2>/dev/null
  return 0
}

# GPU options for the server step: one GPU per server process, bound by Slurm; srun-wrap.sh
# --bind-gpu handles nodes where Slurm does not bind (CUDA_VISIBLE_DEVICES lists them all).
swarm_server_gpu_args() {
  if [ "$SWARM_GPUS_PER_SERVER" != 0 ]; then
    echo "--gpus-per-task=$SWARM_GPUS_PER_SERVER"
  fi
}

# The swarm key (docs/security.md): exports HIVEMIND_SWARM_KEY_FILE, which every program of every
# step reads. $1 = create (swarm.sbatch, dht.sbatch: make a new key for this swarm) or join
# (servers.sbatch, trainers.sbatch: use the key the DHT job made). The key lives in a private
# directory (mode 700) next to the bootstrap file, on the shared filesystem under the submit
# directory, or in SWARM_KEY_DIR. HIVEMIND_SWARM_KEY_FILE set before sbatch: that key is used
# instead; HIVEMIND_SWARM_KEY_FILE=none: no key, the swarm is open to every user of the cluster.
swarm_key() {
  local mode=$1
  case "${HIVEMIND_SWARM_KEY_FILE:-}" in
    none)
      unset HIVEMIND_SWARM_KEY_FILE
      swarm_log "no swarm key (HIVEMIND_SWARM_KEY_FILE=none): anyone on the cluster can call this swarm"
      return 0
      ;;
    "") ;;
    *)
      [ -f "$HIVEMIND_SWARM_KEY_FILE" ] || swarm_die "HIVEMIND_SWARM_KEY_FILE=$HIVEMIND_SWARM_KEY_FILE: no such file"
      export HIVEMIND_SWARM_KEY_FILE
      swarm_log "swarm key: $HIVEMIND_SWARM_KEY_FILE (given)"
      return 0
      ;;
  esac
  local dir=${SWARM_KEY_DIR:-$(dirname "$SWARM_BOOTSTRAP_FILE")/key}
  export HIVEMIND_SWARM_KEY_FILE=$dir/swarm.key
  if [ "$mode" = create ]; then
    # The parent first, then the key directory itself private (also when it already existed).
    if ! { mkdir -p "$(dirname "$dir")" && { [ -d "$dir" ] || mkdir -m 700 "$dir"; } && chmod 700 "$dir"; }; then
      swarm_die "cannot create the private key directory $dir"
    fi
    rm -f "$HIVEMIND_SWARM_KEY_FILE"  # a new swarm gets a new key
    "$HIVEMIND_BIN/hivemind-info" --new-swarm-key "$HIVEMIND_SWARM_KEY_FILE" >/dev/null ||
      swarm_die "cannot write a swarm key to $HIVEMIND_SWARM_KEY_FILE"
    swarm_log "swarm key: $HIVEMIND_SWARM_KEY_FILE (new, for this swarm)"
  else
    [ -f "$HIVEMIND_SWARM_KEY_FILE" ] ||
      swarm_die "no swarm key at $HIVEMIND_SWARM_KEY_FILE: the DHT job makes it; or set HIVEMIND_SWARM_KEY_FILE (none: an open swarm)"
    swarm_log "swarm key: $HIVEMIND_SWARM_KEY_FILE"
  fi
}
