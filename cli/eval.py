import json

import click

from tfn.cli.options import as_json, overrides


@click.command("eval")
@click.argument("target", metavar="RUN_OR_SPEC")
@click.option(
    "--checkpoint",
    metavar="CKPT",
    help="A checkpoint file or run directory; for a run also `latest` or `best`. Default: the run's model (its best with restore_best, else its latest).",
)
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "validation", "test"]), help="The data split to evaluate.")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: the spec's train.device).")
@overrides
@as_json
def command(target: str, checkpoint: str | None, split: str, device: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Evaluate a checkpoint on a data split and print the loss and the
    spec's metrics (train.metrics).

    \b
    Examples:
      tfn eval runs/digits_cnn/1
      tfn eval runs/digits_cnn/1 --checkpoint best --split validation --json
      tfn eval runs/iris/1 --set data.test_path=new.csv   # score other data with the run's model
      tfn eval digits_cnn --checkpoint runs/digits_cnn/1/checkpoints/ckpt-000555.safetensors
    """
    from tfn.runners.train import evaluate_checkpoint

    path, result = evaluate_checkpoint(target, checkpoint, split=split, device=device, overrides=list(overrides))
    if as_json:
        click.echo(json.dumps({"checkpoint": str(path), "split": split, "metrics": result}, indent=2))
        return
    click.echo(f"{path} on {split}:")
    width = max(len(k) for k in result)
    for name, value in result.items():
        if isinstance(value, float):
            click.echo(f"  {name.ljust(width)}  {value:.6g}")
        elif name == "per_class_accuracy":
            click.echo(f"  {name.ljust(width)}  " + " ".join("-" if v is None else f"{v:.3f}" for v in value))
        elif name == "confusion_matrix":
            cell = max(len(str(c)) for row in value for c in row)
            click.echo(f"  {name} (rows: true class, columns: predicted)")
            for row in value:
                click.echo("    " + " ".join(str(c).rjust(cell) for c in row))
