#!/usr/bin/env bash
# GPU check: a few minutes on a CUDA machine.
#
#   benchmarks/gpu_check.sh            (PYTHON=/path/to/python to choose the interpreter)
#
# 1. the GPU tests (pytest -m gpu; they include the graph rewrites of runners/rewrites.py on CUDA);
# 2. every shipped example trained briefly with --device cuda, fp32 then bf16;
# 3. steady-state training throughput of the reference CNN (benchmarks/specs/reference_cnn.yaml)
#    on the GPU: fp32, bf16, fp16 (and train.compile where the spec schema has it), samples/s
#    and fraction of the GPU's measured matmul peak in the same precision; fp32 and bf16 again
#    with TFN_REWRITES=none (the graph rewrites off), so the rewrites' effect on CUDA shows;
# 4. with two or more GPUs: `tfn train --nproc 2` (NCCL) on the reference CNN.
#
# Without a CUDA device it says so and exits with status 77 (the "skipped" convention of
# automake and meson), so scripts can tell a skip from a pass (0) or a failure (1).
set -uo pipefail

PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: SKIPPED: no CUDA device here (torch.cuda.is_available() is False); nothing was measured" >&2
    exit 77
fi
"$PYTHON" -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}')"

step() { echo; echo "== $*"; }
check() {  # check NAME COMMAND...: run it, report ok/FAILED with its last lines
    local name=$1; shift
    local start=$SECONDS
    if "$@" >"$WORK/log" 2>&1; then
        echo "ok      $name ($((SECONDS - start)) s): $(tail -n 1 "$WORK/log")"
    else
        echo "FAILED  $name ($((SECONDS - start)) s):"; tail -n 15 "$WORK/log" | sed 's/^/        /'
        failures=$((failures + 1))
    fi
}

step "1. GPU tests"
check "pytest -m gpu" "$PYTHON" -m pytest -q -m gpu tests/

step "2. examples on the GPU (60 steps each)"
for example in specs/examples/*.yaml specs/examples/*.toml; do
    name=$(basename "${example%.*}")
    for precision in fp32 bf16; do
        check "$name $precision" "$PYTHON" -m tfn.cli.main train "$example" --device cuda --steps 60 --quiet \
            --set train.precision=$precision --out "$WORK/$name-$precision"
    done
done

step "3. reference CNN throughput on the GPU"
"$PYTHON" - <<'EOF' || failures=$((failures + 1))
import json, os, statistics, tempfile, time
from pathlib import Path

import torch

from tfn import specs
from tfn.runners.train import train
from tfn.specs.schema import Train
from tfn.specs.summary import summarize

SPEC = Path("benchmarks/specs/reference_cnn.yaml")
EPOCHS = 4  # the first is warm-up (cuDNN autotuning, allocator, compile)


def peak(dtype, n=8192, repeats=20):
    """FLOP/s of a large matmul in `dtype` (TF32 off for fp32: the honest fp32 rate)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def rates(overrides, rewrites=None):
    if rewrites is None:
        os.environ.pop("TFN_REWRITES", None)
    else:
        os.environ["TFN_REWRITES"] = rewrites  # read when the model is built
    loaded = specs.load(SPEC, overrides)
    data = loaded.spec.data
    per_epoch = -(-data.samples.train // data.batch_size)
    loaded = specs.load(SPEC, [*overrides, f"train.epochs={EPOCHS}", f"train.log_every={per_epoch}"])
    with tempfile.TemporaryDirectory() as tmp:
        train(loaded, out=Path(tmp) / "run", device="cuda", quiet=True)
        records = [json.loads(l) for l in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    return [r["samples_per_second"] for r in records if r["split"] == "train" and r["step"] > per_epoch]


flops = 3 * summarize(specs.load(SPEC).graph).flops_per_sample
peaks = {"fp32": peak(torch.float32), "bf16": peak(torch.bfloat16), "fp16": peak(torch.float16)}
variants = [("fp32", [], None), ("bf16", ["train.precision=bf16"], None), ("fp16", ["train.precision=fp16"], None)]
variants += [("fp32 no rewrites", [], "none"), ("bf16 no rewrites", ["train.precision=bf16"], "none")]
if "compile" in Train.model_fields:
    variants += [("fp32 compile", ["train.compile=true"], None), ("bf16 compile", ["train.precision=bf16", "train.compile=true"], None)]
else:
    print("(train.compile is not in this version's spec schema: no compile rows)")
print(f"matmul peak: fp32 {peaks['fp32'] / 1e12:.1f}, bf16 {peaks['bf16'] / 1e12:.1f}, fp16 {peaks['fp16'] / 1e12:.1f} TFLOP/s; "
      f"training FLOPs/sample {flops / 1e6:.2f} M")
print(f"{'':<18} {'median':>10} {'min':>10} {'max':>10} {'of peak':>8}   samples/s")
for name, overrides, rewrites in variants:
    measured = rates(overrides, rewrites)
    median = statistics.median(measured)
    print(f"{name:<18} {median:10.0f} {min(measured):10.0f} {max(measured):10.0f} {median * flops / peaks[name.split()[0]]:8.2%}")
EOF

step "4. two processes (NCCL)"
if [ "$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    check "tfn train --nproc 2" "$PYTHON" -m tfn.cli.main train benchmarks/specs/reference_cnn.yaml --device cuda --nproc 2 \
        --set train.sync_batchnorm=true --epochs 2 --quiet --out "$WORK/ddp"
else
    echo "skipped: one GPU (NCCL with two processes needs two)"
fi

echo
if [ "$failures" -gt 0 ]; then
    echo "gpu_check: $failures check(s) FAILED"
    exit 1
fi
echo "gpu_check: all checks passed"
