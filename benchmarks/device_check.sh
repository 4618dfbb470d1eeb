#!/usr/bin/env bash
# The GPU checks of one lent device call, in order of value, each under its
# own time limit so that one slow part cannot take the others' output.
# Run from the repository root on the device machine (the device tool sets
# $OUT; elsewhere the files go to /tmp/device_out):
#
#   bash benchmarks/device_check.sh
#
# It uses the machine's own python3 and packages (JAX with CUDA there) with
# vgrad from this checkout, matmuls at HIGHEST precision (the benchmarks set
# it; vgrad's models use Precision.HIGHEST), and writes one file per part.
set -u
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONPATH=$PWD
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # several processes share the GPU
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
part() {  # part NAME SECONDS COMMAND...: run, keep its output, report its status
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s (limit $limit s)" | tee -a "$OUT/$name.txt"
}
part versions 60 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; python3 -c "import jax, flax, optax, chex; print(\"jax\", jax.__version__, \"flax\", flax.__version__, \"optax\", optax.__version__, jax.devices())"'
part main_job 170 python3 -m benchmarks.main_job_benchmark --sizes 256x10 --repeats 3
part exact_256x50 80 python3 -m benchmarks.main_job_benchmark --skip_main --sizes 256x50 --repeats 2
part exact_512x50 100 python3 -m benchmarks.main_job_benchmark --skip_main --sizes 512x50 --repeats 2
part blocks 60 python3 -m benchmarks.blocks_benchmark --repeats 3
part tests 90 env JAX_PLATFORMS=cuda,cpu python3 -m pytest -q -x -p no:cacheprovider -n 4 tests/blocks_test.py tests/log_spectrum_test.py
for f in "$OUT"/*.txt; do echo "##### $f"; tail -n 25 "$f"; done
