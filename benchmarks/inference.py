"""Inference throughput: `tfn run` (the Python API's run) against onnxruntime on the model tfn exports.

    python benchmarks/inference.py [--model reference_cnn] [--batch 256] [--rounds 5]

Each round runs, each in a fresh process and with the same thread count:
`tfn.run(model, {input: batch}, [output])` as `tfn run` does (a NumPy batch
in, NumPy out: conversion included), the module called on a tensor (the bare
forward pass), and an onnxruntime session on the ONNX file `tfn export-graph`
writes for the same weights (the inference peer). Extra tfn contestants take
environment variables (`--variant LABEL KEY=VALUE...`, e.g. TFN_REWRITES=none).
The figure of a run is its median samples/s over the timed calls; the table is
the median over rounds with min and max.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput_worker import MODELS  # noqa: E402


def timed(call, calls: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def worker(kind: str, model_name: str, batch: int, calls: int, onnx_path: str) -> dict:
    import numpy as np
    import torch

    import tfn.runners as tfn

    threads = torch.get_num_threads()
    model = tfn.load_model(MODELS[model_name][0])
    graph = model.graph
    name, output = graph.inputs[0].name, graph.outputs[0]
    images = np.random.default_rng(0).standard_normal((batch, *MODELS[model_name][1]), dtype=np.float32)
    if kind == "tfn run":
        times = timed(lambda: tfn.run(model, {name: images}, [output]), calls)
    elif kind == "forward":
        tensor = torch.from_numpy(images)
        with torch.no_grad():
            times = timed(lambda: model({name: tensor}, [output]), calls)
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        times = timed(lambda: session.run(None, {name: images}), calls)
        return {"rate": batch / statistics.median(times), "threads": threads, "version": f"onnxruntime {ort.__version__}"}
    return {"rate": batch / statistics.median(times), "threads": threads, "version": f"torch {torch.__version__}"}


def export(model_name: str, path: Path) -> None:
    import tfn.runners as tfn

    tfn.export_onnx(tfn.load_model(MODELS[model_name][0]), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="reference_cnn")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--calls", type=int, default=30, help="timed calls per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="LABEL KEY=VALUE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.batch, args.calls, args.onnx)))
        return

    contestants = [("tfn run", "tfn run", {}), ("forward", "forward", {}), ("onnxruntime", "onnxruntime", {})]
    contestants += [(label, "tfn run", dict(a.split("=", 1) for a in assignments)) for label, *assignments in args.variant]
    results: dict[str, list[dict]] = {label: [] for label, _, _ in contestants}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export(args.model, onnx_path)
        for round_ in range(args.rounds):
            shift = round_ % len(contestants)
            for label, kind, env in contestants[shift:] + contestants[:shift]:
                command = [sys.executable, __file__, "--worker", kind, "--model", args.model, "--batch", str(args.batch)]
                command += ["--calls", str(args.calls), "--onnx", str(onnx_path)]
                done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
                if done.returncode != 0:
                    raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result["load"] = os.getloadavg()[0]
                results[label].append(result)
            print(f"round {round_ + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.2f})", file=sys.stderr)

    versions = sorted({r["version"] for runs in results.values() for r in runs})
    loads = [r["load"] for runs in results.values() for r in runs]
    print(f"\n{args.model}, batch {args.batch}, {results['tfn run'][0]['threads']} threads; {', '.join(versions)}; load average {min(loads):.2f} to {max(loads):.2f}")
    print(f"{'samples/s':<22} {'median':>9} {'min':>9} {'max':>9}")
    for label, runs in results.items():
        rates = [r["rate"] for r in runs]
        print(f"{label:<22} {statistics.median(rates):9.0f} {min(rates):9.0f} {max(rates):9.0f}")
    peer = statistics.median(r["rate"] for r in results["onnxruntime"])
    for label, runs in results.items():
        if label != "onnxruntime":
            print(f"ratio {label} / onnxruntime: {statistics.median(r['rate'] for r in runs) / peer:.2f}")


if __name__ == "__main__":
    main()
