#!/usr/bin/env bash
# Every GPU check in one run, one summary table (see benchmarks/gpu_check.py). On a machine with an NVIDIA
# GPU: benchmarks/gpu_check.sh; anywhere: benchmarks/gpu_check.sh --dry-run (the steps that need no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make setup
export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds_shm.xml" RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
exec timeout 600 .venv/bin/python benchmarks/gpu_check.py "$@"
