import json

import click

from tfn.cli.options import as_json, overrides, spec_target
from tfn.cli.table import significant, table


@click.command("time")
@spec_target
@overrides
@click.option("-n", "--iterations", default=10, show_default=True, type=click.IntRange(min=1), help="Timed iterations (the median is shown).")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0), help="Untimed iterations first.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Default: the spec's data.batch_size.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N (CUDA timings are synchronised).")
@click.option(
    "--memory-format",
    type=click.Choice(["auto", "channels_first", "channels_last"]),
    default=None,
    help="Layout of 4-D tensors, as train.memory_format (default: the spec's, or auto).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default=None,
    help="Autocast of the forward passes, as train.precision (default: the spec's, or fp32).",
)
@click.option("--sort", "order", type=click.Choice(["time", "graph"]), default="time", show_default=True, help="Slowest first, or graph order.")
@as_json
def command(target, overrides, iterations, warmup, batch_size, device, memory_format, precision, order, as_json) -> None:
    """Time every node of SPEC forward and backward, as caffe time: the median
    over N iterations after warm-up, its share of the total, its parameters and
    forward FLOPs for the whole batch; the totals line times whole training steps for samples/s. Inputs are
    random data of the graph's shapes (a spec, example name, graph.json or run).

    \b
    Examples:
      tfn time digits_cnn
      tfn time digits_cnn --batch-size 256 -n 20 --sort graph
    """
    from pathlib import Path

    from tfn.runners.timing import time_graph
    from tfn.specs import load, load_graph

    if Path(target).is_dir() or Path(target).suffix == ".json":
        if overrides:
            raise click.UsageError("--set applies to a spec, not to a graph.json or run directory")
        graph, default_batch, default_format, default_precision = load_graph(target), 32, "auto", "fp32"
    else:
        loaded = load(target, overrides)
        train = loaded.spec.train
        graph, default_batch, default_format, default_precision = loaded.graph, loaded.spec.data.batch_size, train.memory_format, train.precision
        if default_batch == "full" and batch_size is None:
            raise click.UsageError("data.batch_size is `full` (the whole training split, unknown without the data): give --batch-size")
    timing = time_graph(
        graph,
        batch_size=batch_size or default_batch,
        iterations=iterations,
        warmup=warmup,
        device=device,
        memory_format=memory_format or default_format,
        precision=precision or default_precision,
    )
    if as_json:
        click.echo(json.dumps(timing.to_dict(), indent=2))
        return
    nodes = sorted(timing.nodes, key=lambda n: -n.total_ms) if order == "time" else timing.nodes
    rows = [("node", "op", "output", "forward ms", "backward ms", "share", "params", "FLOPs/batch")]
    for n in nodes:
        back = "-" if n.backward_ms is None else f"{n.backward_ms:.3f}"
        rows.append((n.name, n.op, n.output, f"{n.forward_ms:.3f}", back, f"{timing.share(n):.1%}", f"{n.parameters:,}", f"{n.flops:,}"))
    for line in table(rows, left=3):
        click.echo(line)
    click.echo(
        f"\n{timing.graph} on {timing.device} ({timing.precision}), batch {timing.batch_size}, median of {timing.iterations} after {timing.warmup} warm-up: "
        f"nodes forward {timing.forward_ms:.3f} ms + backward {timing.backward_ms:.3f} ms; "
        f"whole step {timing.step_ms:.3f} ms = {significant(timing.samples_per_second)} samples/s"
    )
