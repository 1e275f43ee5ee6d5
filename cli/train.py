import sys

import click

from tfn.cli.options import overrides, spec_target


@click.command("train")
@spec_target
@overrides
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (must be new or empty). Default: runs/<name>/<N>.")
@click.option("--runs", "runs_root", default="runs", show_default=True, type=click.Path(file_okay=False), help="Where numbered run directories go.")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: the spec's train.device).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override train.epochs.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def command(target, overrides, out, runs_root, device, epochs, quiet) -> None:
    """Train SPEC and write a run directory: resolved spec.yaml, graph.json,
    checkpoints/, TensorBoard events (train/, validation/), metrics.jsonl, run.json.

    \b
    Example:
      tfn train digits_cnn
      tensorboard --logdir runs
    """
    from tfn.runners.train import train
    from tfn.specs import load

    result = train(
        load(target, overrides), runs_root=runs_root, out=out, device=device, epochs=epochs, quiet=quiet, command=["tfn", *sys.argv[1:]]
    )
    test = result.metrics["test"]
    click.echo(f"{result.run_dir}: {result.steps} steps; test " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
