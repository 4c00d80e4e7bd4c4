#!/usr/bin/env bash
# The main job: installs missing dependencies, builds, and runs the most complete pipeline the project
# has. It grows with the modules; see README.md for what it shows today.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh

echo
echo "=== demo: what this machine and build offer"
./build/bin/hivemind-info
