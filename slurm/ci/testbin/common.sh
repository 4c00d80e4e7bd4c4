# Shared by the test doubles in this directory (sourced).
#
# These are NOT the hivemind-cpp programs: they are stand-ins with the same command-line interface,
# used by slurm/ci/selftest.sh to check that the sbatch templates start the right programs with the
# right arguments, in the right order, and stop them with the right signals, on a real Slurm, without
# needing a build. Each one checks its required flags, records its command line and the signals it
# got in $TESTBIN_RECORD_DIR (default: $SWARM_RUN_DIR/record), and exits 0 on SIGTERM.
# shellcheck shell=bash
set -u
record_dir=${TESTBIN_RECORD_DIR:-${SWARM_RUN_DIR:?}/record}
mkdir -p "$record_dir"
me=$(basename "$0").${HIVEMIND_RANK:-0}
record() { echo "$*" >>"$record_dir/$me"; }
die() {
  record "error: $*"
  echo "$(basename "$0") (test double): $*" >&2
  exit 2
}
# require FLAG VALUE: fails unless VALUE is non-empty.
require() { [ -n "$2" ] || die "missing $1"; }
# Refuses addresses no other host could dial.
routable() {
  case $1 in
    127.*|0.0.0.0|localhost|"") [ "${TESTBIN_ALLOW_LOOPBACK:-1}" = 1 ] || die "announces unroutable address '$1'" ;;
  esac
}
serve_until_term() {
  local usr1=0
  trap 'usr1=$((usr1 + 1)); record "USR1 $usr1"' USR1
  trap 'record "TERM after $usr1 USR1"; exit 0' TERM
  while :; do sleep 0.2 & wait $!; done
}
record "argv: $*"
# The swarm key every step must get from the templates (docs/security.md).
record "swarm key: ${HIVEMIND_SWARM_KEY_FILE:-none}"
