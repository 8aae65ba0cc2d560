#!/bin/bash
# On the GPU machine: build this tree (and optionally a baseline tree beside it), run the CUDA
# tests (ctest -L cuda) and the benchmarks: inference 1k..1M tokens (1024 queries, batch 1) and the
# copy training step at N = 256 and 1024 (batch 128), TCA vs CA, CUDA kernels on and off, and the
# baseline's binary where given; the same in --precision bf16, PyTorch's SDPA at the inference sizes
# (scripts/sdpa_bench.py, bf16 and fp32) and the GP recipe's training time (GP_STEPS steps of the
# preset: batch 16, 6 encoder layers; fp32 and bf16). Logs and JSON go to $OUT.
#   scripts/gpu_bench.sh [BASELINE_SOURCE_DIR]
# BASE_BUILD (default BASELINE_SOURCE_DIR/build) is where the baseline builds: keep it outside any
# folder a later call carries (a carry replaces the folder). BASE_CMAKE_ARGS go to its configure,
# e.g. this tree against itself with a kernel left out:
#   BASE_BUILD=/tmp/basebuild BASE_CMAKE_ARGS=-DCMAKE_CUDA_FLAGS=-DRETREEVER_ROWS_MATMUL_SPLIT_W=0 \
#     scripts/gpu_bench.sh .
set -u
# Everything lands in $RES and comes back as $OUT/results.tgz (the device tool returns few files).
OUT=${OUT:-/tmp/gpu_bench_out}
RES=${RES:-$(mktemp -d)}
mkdir -p "$OUT"
trap 'tar czf /tmp/results.tgz -C "$RES" . ; cp /tmp/results.tgz "$OUT/"' EXIT
BASE=${1:-}
BASE_BUILD=${BASE_BUILD:-$BASE/build}
PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$RES/gpu.txt"
nvcc --version | tail -1

configure() {  # SRC BUILD TESTS [CMAKE_ARGS...]
  [ -e "$1/.deps" ] || ln -s "$(cd "$1/.." && pwd)/.deps" "$1/.deps"
  cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DRETREEVER_BUILD_GUI=OFF -DRETREEVER_BUILD_TESTS="$3" \
    -DCMAKE_PREFIX_PATH="$PREFIX" "${@:4}" >"$2.configure.log" 2>&1 || { tail -30 "$2.configure.log"; return 1; }
  grep -i "cuda kernels\|Qt6" "$2.configure.log" || true
}

t0=$(date +%s)
configure . build ON || exit 1
if [ -n "$BASE" ]; then
  # shellcheck disable=SC2086  # BASE_CMAKE_ARGS: words, as on a command line
  configure "$BASE" "$BASE_BUILD" OFF ${BASE_CMAKE_ARGS:-} || exit 1
  (cmake --build "$BASE_BUILD" -j6 --target retreever >"$RES/build-base.log" 2>&1; echo "baseline build rc $?") &
  JOBS=10
else
  JOBS=16
fi
cmake --build build -j$JOBS --target retreever test_cuda test_masking test_precision >"$RES/build.log" 2>&1
rc=$?
grep -E "error|warning: " "$RES/build.log" | head -40
echo "build rc $rc in $(( $(date +%s) - t0 )) s"
[ $rc -eq 0 ] || { tail -40 "$RES/build.log"; exit 1; }
wait
echo "builds done in $(( $(date +%s) - t0 )) s"

(cd build && ctest -V --timeout ${TEST_TIMEOUT:-300} >"$RES/ctest.log" 2>&1; grep -E "PASSED|FAILED|FAIL:|SKIPPED|bf16|first step|tests passed|Test +#" "$RES/ctest.log" | tail -40)
echo "tests done in $(( $(date +%s) - t0 )) s"

BIN=build/app/retreever
run_bench() {  # NAME BINARY ARGS...
  local name=$1 bin=$2
  shift 2
  echo "== $name: $*"
  if [ -n "${QUICK:-}" ]; then case $name in *-tensor|*-kernels2) return ;; esac; fi  # QUICK=1: kernels only
  local json=--json ext=json
  case $name in *-main) json= ext=txt ;; esac  # the baseline's bench has no --json
  timeout 240 "$bin" bench --device cuda $json "$@" >"$RES/$name.$ext" 2>"$RES/$name.err" || { echo "rc $?"; tail -5 "$RES/$name.err"; }
}
INF="--what inference --max-n ${MAXN:-1048576} --queries 1024 --repeats ${REPEATS:-15}"
run_bench inference-kernels "$BIN" $INF
# PyTorch's fused attention at the same sizes, in the same run (bf16 and fp32; the bench's CA heads).
PYTHONUNBUFFERED=1 timeout 180 python3 scripts/sdpa_bench.py --max-n ${MAXN:-1048576} --queries 1024 --heads 4 \
  --head-dim 16 --repeats ${REPEATS:-15} --json "$RES/sdpa.json" 2>&1 | tee "$RES/sdpa.txt"
run_bench inference-bf16 "$BIN" $INF --precision bf16
run_bench inference-tensor "$BIN" $INF --kernels off
# The GP recipe (preset gp: batch 16, 6 encoder layers, evaluation every 500 steps) for GP_STEPS steps,
# each log line time-stamped: the rate from step 100 to the last line (one evaluation per 500 steps
# inside, as in the recipe) times the paper's 100k steps estimates the recipe's time.
for p in fp32 bf16; do
  s0=$(date +%s.%N)
  timeout 300 "$BIN" train --task gp --device cuda --precision $p --steps ${GP_STEPS:-600} --log-every 10 \
    --out "$RES/gp-$p" 2>&1 | while IFS= read -r l; do echo "$(date +%s.%N) $l"; done >"$RES/gp-$p.log"
  s1=$(date +%s.%N)
  python3 - "$RES/gp-$p.log" $s0 $s1 $p <<'PY' | tee -a "$RES/gp.txt"
import re, sys
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"([0-9.]+) step ([0-9]+)/([0-9]+)", line)
    if m:
        rows.append((float(m.group(1)), int(m.group(2))))
total = float(sys.argv[3]) - float(sys.argv[2])
if len(rows) >= 2:
    (t0, a), (t1, b) = rows[0], rows[-1]
    per = (t1 - t0) / (b - a)
    print("gp recipe %s: steps %d..%d at %.2f ms/step (evaluations included) -> 100k steps ~ %.1f min; whole run %.1f s"
          % (sys.argv[4], a, b, 1000 * per, per * 100000 / 60, total))
else:
    print("gp recipe %s: no step lines (whole run %.1f s); see the log" % (sys.argv[4], total))
PY
  tail -2 "$RES/gp-$p.log"
done
for n in 256 1024; do
  TR="--what train --models tca,ca --seq-len $n --batch 128 --steps ${STEPS:-20}"
  run_bench train$n-kernels "$BIN" $TR
  run_bench train$n-eager "$BIN" $TR --graphs off  # the same steps without CUDA graphs
  run_bench train$n-bf16 "$BIN" $TR --precision bf16
  run_bench train$n-tensor "$BIN" $TR --kernels off
  [ -n "$BASE" ] && run_bench train$n-main "$BASE_BUILD/app/retreever" $TR
  run_bench train$n-kernels2 "$BIN" $TR  # again: the spread between two runs of the same code
done
[ -n "$BASE" ] && run_bench inference-main "$BASE_BUILD/app/retreever" $INF
python3 - "$RES" <<'EOF'
import json, sys, glob, os
out = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(out, name + ".json")))
    except Exception:
        pass
    try:  # the baseline's text tables
        lines = open(os.path.join(out, name + ".txt")).read().splitlines()
    except Exception:
        return None
    rows, models = [], []
    for l in lines:
        f = l.replace("|", " ").split()
        if len(f) == 7 and f[0].isdigit() and f[1].isdigit():
            rows.append({"n": int(f[0]), "tca_us_per_query": float(f[2]), "ca_us_per_query": float(f[3]),
                         "tree_build_ms": float(f[4]), "ca_keys_ms": float(f[5])})
        elif len(f) == 4 and f[0] in ("tca", "ca", "perceiver", "treeformer"):
            models.append({"model": f[0], "ms_per_step": float(f[1])})
    return {"inference": {"rows": rows}, "train": {"models": models}}
print("inference us/query (x1024 = total us): N | TCA kernels | TCA graph | TCA tensor | TCA main | CA | CA graph | CA main | build ms kernels / graph / tensor / main")
runs = {k: load("inference-" + k) for k in ("kernels", "tensor", "main", "bf16")}
rows = {k: {r["n"]: r for r in v["inference"]["rows"]} for k, v in runs.items() if v}
for n in sorted(rows.get("kernels", {})):
    g = lambda k, f: ("%.3f" % rows[k][n][f]) if k in rows and n in rows[k] else "-"
    print(n, g("kernels", "tca_us_per_query"), g("kernels", "tca_graph_us_per_query"), g("tensor", "tca_us_per_query"),
          g("main", "tca_us_per_query"), g("kernels", "ca_us_per_query"), g("kernels", "ca_graph_us_per_query"),
          g("main", "ca_us_per_query"), g("kernels", "tree_build_ms"), g("kernels", "tree_build_graph_ms"),
          g("tensor", "tree_build_ms"), g("main", "tree_build_ms"))
    for k in rows:
        for f, v in rows[k].get(n, {}).items():
            if f.endswith("_error") or f.endswith("matches_eager"):
                print("   ", k, f, str(v)[:300])
try:
    sdpa = {r["n"]: r for r in json.load(open(os.path.join(out, "sdpa.json")))["rows"]}
except Exception:
    sdpa = {}
print("whole 1024-query decode, us: N | TCA fp32 graph | TCA fp32 eager | CA fp32 graph | TCA bf16 graph | TCA bf16 eager | CA bf16 graph | SDPA bf16 | SDPA fp32")
for n in sorted(rows.get("kernels", {})):
    def us(k, f):
        v = rows.get(k, {}).get(n, {}).get(f)
        return "%.0f" % (v * 1024) if v is not None and v > 0 else "-"
    s = sdpa.get(n, {})
    print(n, us("kernels", "tca_graph_us_per_query"), us("kernels", "tca_us_per_query"), us("kernels", "ca_graph_us_per_query"),
          us("bf16", "tca_graph_us_per_query"), us("bf16", "tca_us_per_query"), us("bf16", "ca_graph_us_per_query"),
          "%.0f" % s["bf16_us"] if "bf16_us" in s else "-", "%.0f" % s["fp32_us"] if "fp32_us" in s else "-")
for n in (256, 1024):
    for k in ("kernels", "bf16", "tensor", "main", "kernels2"):
        v = load("train%d-%s" % (n, k))
        if v:
            print("train N=%d %-8s" % (n, k), " ".join("%s %.2f ms" % (m["model"], m["ms_per_step"]) for m in v["train"]["models"]))
EOF
echo "total $(( $(date +%s) - t0 )) s"
