#!/usr/bin/env bash
# The prepared GPU check: one script, under 8 minutes, for a session that has the accelerator machine.
#
#   bash benchmarks/gpu/check.sh                # on the device machine, from the repository root; OUT is set there
#   DRY_RUN=1 OUT=/tmp/gpucheck bash benchmarks/gpu/check.sh   # anywhere: no install, GPU phases skip fast
#
# Phases, most valuable figures first, each under its own `timeout` and logged; a failed phase does not stop
# the next one:
#   env          nvidia-smi, python, torch packages, torch.cuda                                      box  30 s
#   install      this repository into the machine's python (no deps: its CUDA torch is kept)         box  90 s
#   suite_train  benchmarks/gpu/gpu.yaml training cases (fp32 eager; bf16+NHWC eager, compile)       box 270 s
#   suite_infer  benchmarks/gpu/gpu.yaml inference cases (eager, TorchScript; batch 1 and 256)       box 120 s
#   overhead     benchmarks/overhead/run.py on the GPU: harness / bare-loop images/s                 box 120 s
#   fairness     benchmarks/fairness/run.py --device gpu --backends torch: harness / a plain loop     box 100 s
#                over an independent ResNet-50, fp32 and bf16+NHWC, 2 rounds of 3+8 steps
#   report       harness report RUN --references (--fairness with the fairness phase's files)       box  30 s
#   tests        pytest -k "cuda or gpu"                                                            box 120 s
# A global deadline (BUDGET_S, default 465 s) clips every box, keeping time for the report and packing.
#
# What comes back ($OUT; the device tool returns at most 8 files, at most 2 folders down, so results are
# written under $WORK and copied here after every phase, so a killed run still returns what it had):
#   summary.txt  phase / rc / seconds, the torch and GPU found, the headline figures
#   env.txt      the env phase          phases.log   every phase's stdout and stderr, in order
#   results.jsonl  the suite's records  report.md    the report (measured beside published)
#   overhead.txt   the overhead ratio   tests.txt    the CUDA tests
#   (the fairness phase's output is in phases.log and its ratios in summary.txt; fairness-*.json in work.tar.gz)
#   work.tar.gz  the whole work folder (per-phase logs, the run folder with each case's log; no model files)
#
# Environment: OUT (results), WORK (scratch; default a new /tmp/gpucheck.XXXXXX), PYTHON (interpreter; default
# python3, which on the device machine is the image's python holding CUDA torch), BUDGET_S, DRY_RUN=1,
# TORCH_WHEEL (a torch 2.13.0 CUDA wheel to install first, if one was carried), TORCH_INDEX_URL (an index to
# fetch torch==2.13.0 from, where the machine has a network), OVERHEAD_ARGS (extra run.py arguments),
# FAIRNESS_ARGS (extra benchmarks/fairness/run.py arguments, given to both of its runs),
# PHASES (run only these, e.g. PHASES="env install overhead"; the others are recorded as skipped).
# It never installs torch_npu or MindSpore.

set -u
set -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 2
DRY_RUN=${DRY_RUN:-0}
OUT=${OUT:-/tmp/gpucheck-out}
WORK=${WORK:-$(mktemp -d /tmp/gpucheck.XXXXXX)}
BUDGET_S=${BUDGET_S:-465}
SUITE=benchmarks/gpu/gpu.yaml
RESULTS=$WORK/results
RUN_DIR=$RESULTS/gpu/gpu
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ "$DRY_RUN" = 1 ] && [ -x "$REPO/.venv/bin/python" ]; then
    PY=$REPO/.venv/bin/python
else
    PY=$(command -v python3 || command -v python || echo python3)
fi
export REPO DRY_RUN OUT WORK SUITE RESULTS RUN_DIR PY
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
mkdir -p "$OUT" "$WORK/logs" || exit 2
: >"$WORK/phases.log"
T0=$SECONDS
HAVE_TIMEOUT=1
command -v timeout >/dev/null 2>&1 || HAVE_TIMEOUT=0
GPU=0          # set from the env phase: 1 when torch sees a CUDA device
SUMMARY=()     # "phase|rc|seconds|note" rows

# ---------------------------------------------------------------------------------------------- phases
# Each runs in its own bash under `timeout`; exit 99 means "skipped" (the reason is its last line).

phase_env() {
    echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:   $(uname -srm); cores $(nproc 2>/dev/null); $(free -g 2>/dev/null | awk '/^Mem/ {print $2 " GiB RAM"}')"
    echo "repo:   $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
    echo "--- nvidia-smi"
    if command -v nvidia-smi >/dev/null 2>&1; then
        timeout 20 nvidia-smi
        timeout 10 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    echo "--- python: $PY"
    "$PY" -c 'import sys; print(sys.version.replace("\n", " ")); print(sys.executable)'
    echo "--- pip list (torch and what the harness needs)"
    "$PY" -m pip list 2>/dev/null | grep -i -E '^(torch|torchvision|triton|nvidia-cudnn|onnx|onnxruntime|mindspore|torch[-_]npu|pytest|numpy|pandas|scipy|pyyaml|pluggy|tabulate|matplotlib|pillow|setuptools|wheel|harness)[[:space:]]'
    echo "--- torch"
    "$PY" - <<'EOF'
import json, os
import torch
ok = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if ok else "no CUDA device"
print(torch.__version__, ok, name)
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": ok, "device": name,
        "cudnn": torch.backends.cudnn.version() if ok else None,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if ok else None,
        "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if ok else None}
print(json.dumps(info))
with open(os.path.join(os.environ["WORK"], "torch.json"), "w") as f:
    json.dump(info, f)
EOF
}

phase_install() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "DRY_RUN: install skipped; using $PY as it is"
        exit 99
    fi
    torch_id() { "$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1; }
    local before after want=2.13.0 whl="${TORCH_WHEEL:-}" pypath=""
    before=$(torch_id)
    echo "torch before: $before"
    # torch: the pinned 2.13.0 CUDA build where it can be had, else the machine's own CUDA torch, never a CPU one.
    shopt -s nullglob
    local found=("$REPO"/.whl/torch-"$want"*-linux_x86_64.whl)
    [ -z "$whl" ] && [ "${#found[@]}" -gt 0 ] && whl=${found[0]}
    case "$before" in
        "$want"*" cuda None") echo "torch $want here is a CPU build";;
        "$want"*) echo "torch: the CUDA build of $want is already installed";;
        *)  if [ -n "$whl" ]; then
                echo "torch: installing $whl (no deps, no index)"
                "$PY" -m pip install -q --no-index --no-deps "$whl"
            elif [ -n "${TORCH_INDEX_URL:-}" ]; then
                echo "torch: fetching torch==$want from $TORCH_INDEX_URL"
                timeout 60 "$PY" -m pip install -q --index-url "$TORCH_INDEX_URL" "torch==$want"
            else
                echo "torch: NOTE: this machine has torch $before and no way to fetch torch $want (the device"
                echo "       machine reaches no registry; a CUDA torch wheel is ~1 GB, over the 64 MiB a call carries)."
                echo "       The check uses the machine's CUDA torch; every record names it (env.framework_version)."
            fi;;
    esac
    # other wheels carried as the device page says (.whl/*.whl, not torch): into a folder on PYTHONPATH
    local extra=() f
    for f in "$REPO"/.whl/*.whl; do
        case $f in */torch-*) ;; *) extra+=("$f");; esac
    done
    if [ "${#extra[@]}" -gt 0 ]; then
        echo "carried wheels: ${extra[*]}"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$WORK/site" "${extra[@]}" \
            && pypath="$WORK/site"
    fi
    # the repository, without its extras: [torch] pins torch==2.13.0 and would make pip replace the CUDA torch
    # (or fail without a network); [test] is pytest, which the image has. --no-build-isolation: no index here.
    echo "harness: pip install --no-deps --no-build-isolation -e ."
    if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e "$REPO"; then
        echo "harness: pip install failed; falling back to a hand-made dist-info on PYTHONPATH"
        local shim="$WORK/shim"
        mkdir -p "$shim/harness-0.1.0.dist-info"
        ln -sfn "$REPO/plugins/torch" "$shim/harness_torch"
        ln -sfn "$REPO/plugins/mindspore" "$shim/harness_mindspore"
        printf 'Metadata-Version: 2.1\nName: harness\nVersion: 0.1.0\n' >"$shim/harness-0.1.0.dist-info/METADATA"
        printf '[console_scripts]\nharness = harness.cli.main:main\n\n[harness.backends]\nmindspore = harness_mindspore.plugin\ntorch = harness_torch.plugin\n' \
            >"$shim/harness-0.1.0.dist-info/entry_points.txt"
        pypath="${pypath:+$pypath:}$REPO:$shim"
    fi
    echo "$pypath" >"$WORK/pythonpath"
    [ -n "$pypath" ] && export PYTHONPATH="$pypath${PYTHONPATH:+:$PYTHONPATH}"
    echo "mindspore: not installed (not needed for this check; the device machine has no registry to get it from)"
    after=$(torch_id)
    echo "torch after:  $after"
    if [ "$before" != "$after" ] && [ -z "$whl" ] && [ -z "${TORCH_INDEX_URL:-}" ]; then
        echo "WARNING: torch changed during the install"
    fi
    case "$after" in *" cuda None") echo "WARNING: torch is a CPU build: the GPU cases will be skipped";; esac
    local rc=0
    "$PY" -c 'import harness, harness_torch, yaml, pandas, scipy, tabulate, pluggy, matplotlib, PIL, pytest' || rc=1
    "$PY" -c 'import onnx, onnxruntime' 2>/dev/null || echo "note: onnx/onnxruntime missing (only the onnx export needs them)"
    "$PY" -m harness.cli.main plugins || rc=1
    return $rc
}

suite_run() {  # suite_run GLOB: the suite's cases matching GLOB, into the one run folder
    local where=(--results "$RESULTS" --run-id gpu)
    [ -f "$RUN_DIR/run.json" ] && where=(--resume "$RUN_DIR")
    "$PY" -m harness.cli.main run "$SUITE" --only "$1" "${where[@]}"
}
phase_suite_train() { suite_run '*scenario=train*'; }
phase_suite_infer() { suite_run '*scenario=inference*'; }

phase_overhead() {
    if [ "$GPU" != 1 ]; then
        echo "no CUDA device: the overhead ratio on the GPU is skipped"
        exit 99
    fi
    # shellcheck disable=SC2086
    "$PY" benchmarks/overhead/run.py --device gpu --width 1 --image-size 224 --num-classes 1000 \
        --batch-size 128 --warmup 5 --steps 30 --rounds 3 ${OVERHEAD_ARGS:-}
}

phase_fairness() {
    if [ "$GPU" != 1 ]; then
        echo "no CUDA device: the fairness ratios on the GPU are skipped"
        exit 99
    fi
    # small: full-size model, few steps, 2 rounds; MindSpore is not installed here, so torch only
    local common=(--device gpu --backends torch --batch-size 64 --warmup 3 --steps 8 --rounds 2 --timeout 60)
    # shellcheck disable=SC2086
    "$PY" benchmarks/fairness/run.py "${common[@]}" --out "$WORK/fairness-fp32.json" ${FAIRNESS_ARGS:-} || return
    # shellcheck disable=SC2086
    "$PY" benchmarks/fairness/run.py "${common[@]}" --bf16 --channels-last --out "$WORK/fairness-bf16.json" \
        ${FAIRNESS_ARGS:-}
}

phase_report() {
    if [ ! -f "$RUN_DIR/results.jsonl" ]; then
        echo "no results in $RUN_DIR: nothing to report"
        exit 99
    fi
    local fair=() f
    for f in "$WORK"/fairness-*.json; do [ -f "$f" ] && fair+=(--fairness "$f"); done
    "$PY" -m harness.cli.main report "$RUN_DIR" --references "${fair[@]}" -o "$WORK/report.md" \
        && echo "report: $WORK/report.md"
}

phase_tests() {
    "$PY" -m pytest -q -k "cuda or gpu" tests/ -p no:cacheprovider --continue-on-collection-errors
}

export -f phase_env phase_install suite_run phase_suite_train phase_suite_infer phase_overhead phase_fairness \
    phase_report phase_tests

# ---------------------------------------------------------------------------------------------- plumbing

figures() {  # the headline figures from the suite's records (and the overhead line)
    "$PY" - "$RUN_DIR/results.jsonl" <<'EOF' 2>&1
import json, os, sys
path = sys.argv[1]
if not os.path.exists(path):
    print("no suite records"); sys.exit()
last = {}
for line in open(path):
    r = json.loads(line)
    if r.get("kind", "measured") == "measured":
        last[r["case"]] = r
for name, r in last.items():
    v = r.get("config", {}).get("variant", {})
    s = r.get("config", {}).get("settings", {})
    label = f"{v.get('scenario')} {v.get('precision')}{'+NHWC' if s.get('channels_last') else ''} " \
            f"{v.get('mode') if v.get('scenario') == 'train' else v.get('runtime')}"
    m = r.get("metrics", {})
    if r["status"] != "ok":
        print(f"{label:32s} {r['status']}: {(r.get('reason') or '')[:150]}")
        continue
    parts = []
    if "train" in m:
        t = m["train"]
        parts.append(f"{t['images_per_s']:.0f} img/s at batch {s.get('batch_size')}, "
                     f"p50 {t['ms_per_step']['p50']:.1f} ms/step, first step {t.get('first_step_s', 0):.1f} s")
    inf = m.get("inference", {})
    if "latency_ms" in inf:
        parts.append(f"latency b1 p50 {inf['latency_ms']['p50']:.2f} ms p99 {inf['latency_ms']['p99']:.2f} ms")
    for t in inf.get("throughput", []):
        parts.append(f"b{t['batch_size']} {t['images_per_s']:.0f} img/s")
    peak = (m.get("memory") or {}).get("device_peak_bytes")
    if peak:
        parts.append(f"peak {peak / 2**30:.1f} GiB")
    print(f"{label:32s} " + "; ".join(parts))
env = next((r["env"] for r in last.values() if r.get("env", {}).get("framework_version")), None)
if env:
    print(f"(torch {env['framework_version']} on {env.get('device_model')}; harness {env.get('harness_version')}, "
          f"commit {env.get('git_commit')})")
EOF
    grep -h 'ratio of medians' "$WORK/logs/overhead.log" 2>/dev/null | tail -1
    grep -h 'harness / expert' "$WORK/logs/fairness.log" 2>/dev/null | sed 's/^ */fairness: /'
}

write_summary() {
    {
        echo "GPU check: $(date -u +%Y-%m-%dT%H:%M:%SZ), elapsed $((SECONDS - T0)) s of $BUDGET_S s budget$([ "$DRY_RUN" = 1 ] && echo ' (DRY_RUN)')"
        echo "python: $PY"
        [ -f "$WORK/torch.json" ] && echo "torch:  $(cat "$WORK/torch.json")"
        echo
        printf '%-12s %5s %7s  %s\n' phase rc seconds note
        local row name rc secs note
        for row in "${SUMMARY[@]}"; do
            IFS='|' read -r name rc secs note <<<"$row"
            printf '%-12s %5s %7s  %s\n' "$name" "$rc" "$secs" "$note"
        done
        echo
        echo "figures:"
        figures | sed 's/^/  /'
    } >"$WORK/summary.txt"
}

publish() {  # copy what exists to $OUT (at most 8 files, flat); cheap, done after every phase
    cp -f "$WORK/summary.txt" "$OUT/summary.txt" 2>/dev/null
    cp -f "$WORK/phases.log" "$OUT/phases.log" 2>/dev/null
    cp -f "$WORK/logs/env.log" "$OUT/env.txt" 2>/dev/null
    cp -f "$RUN_DIR/results.jsonl" "$OUT/results.jsonl" 2>/dev/null
    cp -f "$WORK/report.md" "$OUT/report.md" 2>/dev/null
    cp -f "$WORK/logs/overhead.log" "$OUT/overhead.txt" 2>/dev/null
    cp -f "$WORK/logs/tests.log" "$OUT/tests.txt" 2>/dev/null
    return 0
}

phase() {  # phase NAME BOX RESERVE: run phase_NAME under min(BOX, time left - RESERVE) seconds
    local name=$1 box=$2 reserve=$3 t rc s0 secs note=""
    local log=$WORK/logs/$name.log
    t=$((BUDGET_S - (SECONDS - T0) - reserve))
    [ "$t" -gt "$box" ] && t=$box
    s0=$SECONDS
    if [ -n "${PHASES:-}" ] && [[ " $PHASES " != *" $name "* ]]; then
        rc=skip note="not in PHASES"
        echo "skipped: $note" >"$log"
    elif [ "$t" -lt 15 ]; then
        rc=skip note="budget: ${t}s left for it"
        echo "skipped: $note" >"$log"
    else
        echo "== $(date +%T) +$((SECONDS - T0))s phase $name (up to ${t}s) -> $log"
        if [ "$HAVE_TIMEOUT" = 1 ]; then
            timeout -k 15 -s TERM "$t" bash -c "phase_$name" >"$log" 2>&1 </dev/null
        else
            bash -c "phase_$name" >"$log" 2>&1 </dev/null
        fi
        rc=$?
        case $rc in
            0) note=ok;;
            99) rc=skip note=$(tail -1 "$log");;
            124|137) note="timed out after ${t}s";;
            *) note="failed: $(grep -v '^[[:space:]]*$' "$log" | tail -1 | cut -c1-160)";;
        esac
    fi
    secs=$((SECONDS - s0))
    SUMMARY+=("$name|$rc|$secs|${note//|//}")
    echo "   $name: rc $rc, ${secs}s, $note"
    # the harness's one line per case, for the output tail
    grep -E '^\[[0-9]+/[0-9]+\] .*: (ok|failed|skipped)' "$log" 2>/dev/null | sed 's/^/   /'
    {
        echo "===== phase $name: rc $rc, ${secs}s (box ${t}s) ====="
        tail -c 2000000 "$log"
        echo
    } >>"$WORK/phases.log"
    write_summary
    publish
}

# ---------------------------------------------------------------------------------------------- run

echo "GPU check: repo $REPO, python $PY, work $WORK, out $OUT, budget ${BUDGET_S}s$([ "$DRY_RUN" = 1 ] && echo ', DRY_RUN')"
[ "$HAVE_TIMEOUT" = 1 ] || echo "WARNING: no 'timeout' command: phases run without their time boxes"

phase env 30 60
if [ -f "$WORK/torch.json" ] && grep -q '"cuda_available": true' "$WORK/torch.json"; then GPU=1; fi
export GPU
[ "$GPU" = 1 ] || echo "   no CUDA device seen by torch: GPU cases will be recorded as skipped, overhead skipped"
phase install 90 60
if [ -s "$WORK/pythonpath" ]; then
    PYTHONPATH="$(cat "$WORK/pythonpath")${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
fi
phase suite_train 270 40
phase suite_infer 120 40
phase overhead 120 40
phase fairness 100 40
phase report 30 10
phase tests 120 10

# pack: the whole work folder without model files and checkpoints (the device tool returns 16 MiB a file)
tar -C "$(dirname "$WORK")" -czf "$OUT/work.tar.gz" --exclude='*.pt' --exclude='*.pt2' --exclude='*.onnx' \
    --exclude='*.ckpt' --exclude='*.mindir' --exclude='checkpoints' --exclude='site' --exclude='shim' \
    "$(basename "$WORK")" 2>/dev/null || echo "pack: tar failed"
write_summary
publish
echo
cat "$WORK/summary.txt"
echo
shopt -s nullglob
files=("$OUT"/*)
echo "files in $OUT (${#files[@]}; the device tool returns 8 at most): ${files[*]##*/}"
