#!/usr/bin/env bash
# run-role.sh ROLE: the per-task command of the sbatch templates, run under srun-wrap.sh (which has set
# HIVEMIND_RANK, HIVEMIND_LOCAL_RANK and HIVEMIND_NODE_ADDR). Builds the command line of one program
# from the SWARM_* variables (see slurm/lib/swarm-lib.sh) and execs it, so the program is the process
# that srun-wrap.sh and Slurm signal.
#   dht      hivemind-dht on this node; writes SWARM_BOOTSTRAP_FILE once listening
#   server   hivemind-server with SWARM_EXPERT_ARGS; experts from SWARM_EXPERT_PATTERN with {rank} replaced by the server's
#            rank in its step; port SWARM_SERVER_PORT + local rank (one server per GPU on a node);
#            checkpoints in SWARM_CHECKPOINT_DIR/server-<rank>
#   trainer  SWARM_TRAINER_CMD (looked up in HIVEMIND_BIN, then PATH), with HIVEMIND_INITIAL_PEERS
#            set to SWARM_PEERS (comma-separated; what every program reads for --initial_peers);
#            without one, hivemind-demo --initial_peers SWARM_PEERS --steps SWARM_STEPS
set -eu
role=${1:?usage: run-role.sh dht|server|trainer}
: "${HIVEMIND_BIN:?}" "${HIVEMIND_NODE_ADDR:?run under srun-wrap.sh}" "${HIVEMIND_RANK:?}"

# Extra arguments are whitespace-separated words on purpose (SWARM_SERVER_ARGS="--num_handlers 8").
# shellcheck disable=SC2086
case $role in
  dht)
    peers=()
    if [ -n "${SWARM_DHT_PEERS:-}" ]; then read -r -a peers <<<"$SWARM_DHT_PEERS"; peers=(--initial-peers "${peers[@]}"); fi
    exec "$HIVEMIND_BIN/hivemind-dht" --host "$HIVEMIND_NODE_ADDR" --port "$SWARM_DHT_PORT" \
      ${peers[@]+"${peers[@]}"} --bootstrap-file "$SWARM_BOOTSTRAP_FILE" $SWARM_DHT_ARGS
    ;;
  server)
    read -r -a peers <<<"${SWARM_PEERS:?}"
    pattern=${SWARM_EXPERT_PATTERN//\{rank\}/$HIVEMIND_RANK}
    checkpoints=$SWARM_CHECKPOINT_DIR/server-$HIVEMIND_RANK
    mkdir -p "$checkpoints"
    exec "$HIVEMIND_BIN/hivemind-server" $SWARM_EXPERT_ARGS \
      --expert_pattern "$pattern" --initial_peers "${peers[@]}" --host "$HIVEMIND_NODE_ADDR" \
      --port "$((SWARM_SERVER_PORT + ${HIVEMIND_LOCAL_RANK:-0}))" --checkpoint_dir "$checkpoints" \
      $SWARM_SERVER_ARGS
    ;;
  trainer)
    read -r -a peers <<<"${SWARM_PEERS:?}"
    if [ -n "${SWARM_TRAINER_CMD:-}" ]; then
      HIVEMIND_INITIAL_PEERS=$(IFS=,; echo "${peers[*]}")
      export HIVEMIND_INITIAL_PEERS
      export PATH=$HIVEMIND_BIN:$PATH
      exec $SWARM_TRAINER_CMD $SWARM_TRAINER_ARGS
    fi
    exec "$HIVEMIND_BIN/hivemind-demo" --initial_peers "${peers[@]}" --steps "$SWARM_STEPS" $SWARM_TRAINER_ARGS
    ;;
  *)
    echo "run-role.sh: unknown role '$role' (dht, server or trainer)" >&2
    exit 2
    ;;
esac
