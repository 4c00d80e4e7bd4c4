#!/usr/bin/env bash
# run-role.sh ROLE: the per-task command of the sbatch templates, run under srun-wrap.sh (which has set
# HIVEMIND_RANK, HIVEMIND_LOCAL_RANK and HIVEMIND_NODE_ADDR). Builds the command line of one program
# from the SWARM_* variables (see slurm/lib/swarm-lib.sh) and execs it, so the program is the process
# that srun-wrap.sh and Slurm signal.
#   dht      hivemind-dht on this node; writes SWARM_BOOTSTRAP_FILE once listening
#   server   hivemind-server; experts from SWARM_EXPERT_PATTERN with {rank} replaced by the server's
#            rank in its step; port SWARM_SERVER_PORT + local rank (one server per GPU on a node);
#            checkpoints in SWARM_CHECKPOINT_DIR/server-<rank>
#   trainer  hivemind-demo against SWARM_PEERS
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
    exec "$HIVEMIND_BIN/hivemind-server" --expert_cls "$SWARM_EXPERT_CLS" --hidden_dim "$SWARM_HIDDEN_DIM" \
      --expert_pattern "$pattern" --initial_peers "${peers[@]}" --host "$HIVEMIND_NODE_ADDR" \
      --port "$((SWARM_SERVER_PORT + ${HIVEMIND_LOCAL_RANK:-0}))" --checkpoint_dir "$checkpoints" \
      $SWARM_SERVER_ARGS
    ;;
  trainer)
    read -r -a peers <<<"${SWARM_PEERS:?}"
    exec "$HIVEMIND_BIN/hivemind-demo" --initial_peers "${peers[@]}" --steps "$SWARM_STEPS" $SWARM_TRAINER_ARGS
    ;;
  *)
    echo "run-role.sh: unknown role '$role' (dht, server or trainer)" >&2
    exit 2
    ;;
esac
