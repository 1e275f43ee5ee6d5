import json
import math

import click

from tfn.cli.options import as_json


@click.command("inspect-checkpoint")
@click.argument("checkpoint", metavar="CKPT")
@as_json
def command(checkpoint: str, as_json: bool) -> None:
    """List the variables in CKPT (a checkpoint file, a checkpoints directory or
    a run directory, then its latest checkpoint): name, dtype, shape, size.
    Reads only the header.

    \b
    Example:
      tfn inspect-checkpoint runs/digits_cnn/1
    """
    from tfn.runners.checkpoint import read_info

    info = read_info(checkpoint)
    if as_json:
        variables = [{"name": n, "dtype": d, "shape": list(s), "size": math.prod(s)} for n, (d, s) in info.variables.items()]
        click.echo(json.dumps({"path": str(info.path), "metadata": info.metadata, "variables": variables}, indent=2))
        return
    click.echo(f"{info.path}")
    click.echo("  " + ", ".join(f"{k} {v}" for k, v in sorted(info.metadata.items())))
    width = max((len(n) for n in info.variables), default=0)
    for name, (dtype, shape) in info.variables.items():
        click.echo(f"{name.ljust(width)}  {dtype:<5} {str(list(shape)):<18} {math.prod(shape):>10,}")
    total = sum(math.prod(s) for _, s in info.variables.values())
    click.echo(f"# {len(info.variables)} variables, {total:,} values")
