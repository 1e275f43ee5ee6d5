"""Steady-state training throughput: tfn against the PyTorch tutorial loop, Keras `fit` and a plain `tf.function` step.

    python benchmarks/train_throughput.py [--rounds 5] [--models reference_cnn,resnet_small,vgg_small] [--tf-python PATH]

Every run is a fresh process (benchmarks/throughput_worker.py) that trains one
model with one contestant for 3 epochs of 6,400 in-memory samples at batch 64
and reports the samples/s of the epochs after the first (warm-up): tfn's own
training entry point with its defaults, the frozen tutorial loop
(baseline_tutorial_loop.py, tutorial_models.py), Keras `fit` and a plain
`tf.function` step of the same model (keras_models.py; only where an
interpreter with TensorFlow is found: --tf-python, $TFN_TF_PYTHON, this one or
`python3`; TensorFlow is never a tfn dependency). Each process imports one
framework, so thread pools never share a process.

Every round runs every contestant of every model once, in an order rotated
from round to round, so all see the same machine weather. A run's figure is
the mean of its timed epochs; the table shows the median over rounds with the
min and max, and each ratio is the ratio of those medians (in brackets: the
range of the same ratio taken within each round), and each process's peak
resident memory (median over rounds). bf16 rows (--bf16 MODELS)
compare `train.precision: bf16` with Keras's mixed_bfloat16 policy.
`--variant LABEL KEY=VALUE...` adds a tfn contestant with environment
variables or `set:` spec overrides (A/B of a change in one run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput_worker import MODELS, find_tf_python  # noqa: E402

WORKER = str(HERE / "throughput_worker.py")
LABELS = {"tfn": "tfn train", "tutorial": "tutorial loop", "keras_fit": "keras fit", "tf_step": "tf.function step"}


class Contestant:
    def __init__(self, label: str, kind: str, python: str, precision: str = "fp32", env: dict | None = None, overrides: list | None = None):
        self.label, self.kind, self.python, self.precision = label, kind, python, precision
        self.env, self.overrides = env or {}, overrides or []

    def run(self, model: str, epochs: int, samples: int, threads: int | None = None) -> dict:
        command = [self.python, WORKER, self.kind, "--model", model, "--epochs", str(epochs), "--samples", str(samples), "--precision", self.precision]
        command += ["--threads", str(threads)] if threads else []
        for override in self.overrides:
            command += ["--set", override]
        load = os.getloadavg()[0]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **self.env})
            _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
            process.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0), err.seek(0)
            if process.returncode != 0:
                raise SystemExit(f"{self.label} on {model} failed:\n{err.read()[-3000:]}")
            result = json.loads(out.read().strip().splitlines()[-1])
        result["load"] = max(load, os.getloadavg()[0])
        result["rate"] = statistics.fmean(result["rates"])
        result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
        return result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return ""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return ", ".join(f for f in wanted if f in flags)


def training_flops(model: str) -> float:
    from tfn import specs
    from tfn.specs.summary import summarize

    return 3.0 * summarize(specs.load(MODELS[model][0]).graph).flops_per_sample


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """fp32 FLOP/s of a large matmul: the yardstick of the `of peak` column."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def parse_variant(words: list[str], python: str) -> Contestant:
    label, *assignments = words
    env, overrides = {}, []
    for assignment in assignments:
        if assignment.startswith("set:"):
            overrides.append(assignment[4:])
        else:
            key, _, value = assignment.partition("=")
            env[key] = value
    return Contestant(label, "tfn", python, env=env, overrides=overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="reference_cnn,resnet_small,vgg_small", help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--bf16", default="reference_cnn", help="models also measured in bf16 (comma-separated; empty: none)")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    parser.add_argument("--samples", type=int, default=6400, help="training samples per epoch")
    parser.add_argument("--tf-python", help="an interpreter with TensorFlow for the Keras columns")
    parser.add_argument("--no-tf", action="store_true", help="skip the TensorFlow columns")
    parser.add_argument("--threads", type=int, help="threads for every framework (default: their own, the core count)")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="LABEL KEY=VALUE", help="an extra tfn contestant")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()

    models = [m for m in args.models.split(",") if m]
    bf16_models = [m for m in args.bf16.split(",") if m]
    unknown = [m for m in models + bf16_models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; the models are {', '.join(MODELS)}")
    tf_python = None if args.no_tf else (args.tf_python or find_tf_python())
    me = sys.executable
    fp32 = [Contestant(LABELS["tfn"], "tfn", me), Contestant(LABELS["tutorial"], "tutorial", me)]
    fp32 += [parse_variant(words, me) for words in args.variant]
    bf16 = [Contestant("tfn train bf16", "tfn", me, "bf16")]
    if tf_python:
        fp32 += [Contestant(LABELS[k], k, tf_python) for k in ("keras_fit", "tf_step")]
        bf16 += [Contestant(LABELS[k] + " bf16", k, tf_python, "bf16") for k in ("keras_fit", "tf_step")]
    schedule = [(m, c) for m in models for c in fp32] + [(m, c) for m in bf16_models for c in bf16]

    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()
    results: dict[tuple[str, str], list[dict]] = {}
    for round_ in range(args.rounds):
        shift = round_ % len(schedule)
        for model, contestant in schedule[shift:] + schedule[:shift]:
            results.setdefault((model, contestant.label), []).append(contestant.run(model, args.epochs, args.samples, args.threads))
        loads = [r["load"] for runs in results.values() for r in runs[-1:]]
        print(f"round {round_ + 1}/{args.rounds} done; load average {min(loads):.2f} to {max(loads):.2f}", file=sys.stderr)
    load_end = os.getloadavg()
    peak = matmul_peak()

    any_run = next(iter(results.values()))[0]
    versions = sorted({r["version"] for runs in results.values() for r in runs})
    print(f"\n{started:%Y-%m-%d %H:%M %Z}, {cpu_model()} ({os.cpu_count()} CPUs; {cpu_flags()}), {', '.join(versions)}, {any_run['threads']} threads")
    all_loads = [r["load"] for runs in results.values() for r in runs]
    print(
        f"load average (1 min): {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end, "
        f"{min(all_loads):.2f} to {max(all_loads):.2f} during the runs; fp32 matmul peak {peak / 1e9:.0f} GFLOP/s"
    )
    print(f"{args.rounds} rounds; each run {args.epochs} epochs of {args.samples} samples, batch 64, the first epoch excluded\n")

    def median(model: str, label: str) -> float:
        return statistics.median(r["rate"] for r in results[(model, label)])

    def ratio(model: str, a: str, b: str) -> str:
        if (model, a) not in results or (model, b) not in results:
            return ""
        within = [x["rate"] / y["rate"] for x, y in zip(results[(model, a)], results[(model, b)])]
        return f"{median(model, a) / median(model, b):.2f} [{min(within):.2f}-{max(within):.2f}]"

    for model in dict.fromkeys(models + bf16_models):
        flops = training_flops(model)
        shape = "x".join(map(str, MODELS[model][1]))
        print(f"{model} ({shape}, {flops / 1e6:.1f} training MFLOP/sample)")
        print(f"  {'samples/s':<24} {'median':>8} {'min':>8} {'max':>8} {'of peak':>8} {'peak RSS':>9}")
        for label in [c.label for c in fp32 + bf16]:
            if (model, label) in results:
                rates = [r["rate"] for r in results[(model, label)]]
                m = statistics.median(rates)
                rss = statistics.median(r["peak_rss_mb"] for r in results[(model, label)])
                print(f"  {label:<24} {m:8.0f} {min(rates):8.0f} {max(rates):8.0f} {m * flops / peak:8.1%} {rss:6.0f} MB")
        lines = [("tfn / tutorial loop", LABELS["tfn"], LABELS["tutorial"]), ("tfn / keras fit", LABELS["tfn"], LABELS["keras_fit"])]
        lines += [("tfn / tf.function step", LABELS["tfn"], LABELS["tf_step"])]
        lines += [(f"{c.label} / tfn train", c.label, LABELS["tfn"]) for c in fp32 if c.kind == "tfn" and c.label != LABELS["tfn"]]
        lines += [("tfn bf16 / tfn fp32", "tfn train bf16", LABELS["tfn"]), ("tfn bf16 / keras fit bf16", "tfn train bf16", "keras fit bf16")]
        for name, a, b in lines:
            text = ratio(model, a, b)
            if text:
                print(f"  ratio {name:<28} {text}")
        if (model, LABELS["tutorial"]) in results:
            rss = {k: statistics.median(r["peak_rss_mb"] for r in results[(model, LABELS[k])]) for k in ("tfn", "tutorial")}
            print(f"  peak RSS tfn / tutorial loop       {rss['tfn'] / rss['tutorial']:.2f}")
        print()
    if args.json:
        args.json.write_text(json.dumps({f"{m}|{label}": runs for (m, label), runs in results.items()}, indent=1))


if __name__ == "__main__":
    main()
