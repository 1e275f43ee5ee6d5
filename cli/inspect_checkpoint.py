import json

import click

from tfn.cli.options import as_json
from tfn.cli.table import table


@click.command("inspect-checkpoint")
@click.argument("checkpoint", metavar="CKPT")
@click.option("--tensor", "tensors", multiple=True, metavar="NAME", help="Print this variable's values (repeatable).")
@click.option("--all-tensors", is_flag=True, help="Print every variable's values.")
@click.option("--full", is_flag=True, help="Print values in full instead of summarised with '...'.")
@click.option("--stats", is_flag=True, help="Add min, max, mean, std, L2 norm and NaN/Inf counts (reads the values).")
@click.option("--diff", "other", metavar="OTHER", help="Compare with another checkpoint: added, removed, reshaped, changed.")
@click.option("--against", "graph_target", metavar="SPEC_OR_GRAPH", help="Check against the variables a spec, graph.json or run expects.")
@as_json
def command(checkpoint, tensors, all_tensors, full, stats, other, graph_target, as_json) -> None:
    """List the variables in CKPT (a checkpoint file, a checkpoints directory or
    a run directory, then its weights: the latest checkpoint, or the best one
    after restore_best): name, dtype, shape, size and
    totals. Listing reads only the header; --tensor, --stats and --diff read
    values. Files that are not safetensors (pickles included) are refused.

    \b
    Examples:
      tfn inspect-checkpoint runs/digits_cnn/1
      tfn inspect-checkpoint runs/digits_cnn/1 --stats
      tfn inspect-checkpoint runs/digits_cnn/1 --tensor conv1/bias --full
      tfn inspect-checkpoint runs/digits_cnn/1/checkpoints/ckpt-000050.safetensors --diff runs/digits_cnn/1
      tfn inspect-checkpoint runs/digits_cnn/1 --against digits_cnn
    """
    from tfn.runners import inspect

    if other:
        _print_diff(inspect.diff(checkpoint, other), as_json)
        return
    if graph_target:
        from tfn.specs import load_graph

        _print_fit(inspect.against(checkpoint, load_graph(graph_target)), as_json)
        return
    listing = inspect.list_variables(checkpoint, stats=stats)
    names = list(tensors) or ([v.name for v in listing.variables] if all_tensors else [])
    values = inspect.read_tensors(listing.path, names) if names else {}
    if as_json:
        data = listing.to_dict()
        if values:
            data["values"] = {n: v.tolist() for n, v in values.items()}
        click.echo(json.dumps(data, indent=2))
        return
    if not values:
        _print_listing(listing)
    for name, value in values.items():
        click.echo(f"{name} {value.dtype} {list(value.shape)}\n{inspect.format_value(value, full)}")


def _var(dtype: str, shape) -> str:
    return f"{dtype} {list(shape)}"


def _print_listing(listing) -> None:
    click.echo(str(listing.path))
    if listing.metadata:
        click.echo("  " + ", ".join(f"{k} {v}" for k, v in sorted(listing.metadata.items())))
    rows = [("variable", "dtype", "shape", "size")]
    rows += [(v.name, v.dtype, str(list(v.shape)), f"{v.size:,}") for v in listing.variables]
    with_stats = any(v.stats for v in listing.variables)
    if with_stats:
        rows[0] += ("min", "max", "mean", "std", "L2 norm", "NaN", "Inf")
        for i, v in enumerate(listing.variables, 1):
            s = v.stats
            rows[i] += tuple(f"{x:.6g}" for x in (s.min, s.max, s.mean, s.std, s.l2_norm)) + (str(s.nan), str(s.inf))
    for line in table(rows, left=3):
        click.echo(line)
    click.echo(f"# {len(listing.variables)} variables, {listing.total_size:,} values, {listing.total_bytes:,} bytes")


def _print_diff(d, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(d.to_dict(), indent=2))
        return
    click.echo(f"{d.this}\n  -> {d.other}")
    for name, (dtype, shape) in d.added.items():
        click.echo(f"+ {name}  {_var(dtype, shape)}  (added)")
    for name, (dtype, shape) in d.removed.items():
        click.echo(f"- {name}  {_var(dtype, shape)}  (removed)")
    for r in d.reshaped:
        click.echo(f"~ {r.name}  {_var(*r.this)} -> {_var(*r.other)}  (reshaped)")
    for c in d.changed:
        relative = "n/a (was all zeros)" if c.relative_l2 is None else f"{c.relative_l2:.3g}"
        click.echo(f"* {c.name}  max |change| {c.max_abs:.6g}, relative L2 change {relative}")
    click.echo(
        f"# {len(d.added)} added, {len(d.removed)} removed, {len(d.reshaped)} reshaped, "
        f"{len(d.changed)} changed, {len(d.unchanged)} unchanged"
    )


def _print_fit(fit, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(fit.to_dict(), indent=2))
        return
    click.echo(f"{fit.checkpoint} against graph {fit.graph_name!r}")
    for name, (dtype, shape) in fit.missing.items():
        click.echo(f"  missing from checkpoint: {name}  {_var(dtype, shape)}")
    for name, (dtype, shape) in fit.extra.items():
        click.echo(f"  not in graph: {name}  {_var(dtype, shape)}")
    for m in fit.mismatched:
        click.echo(f"  differs: {m.name}  checkpoint {_var(*m.this)}, graph {_var(*m.other)}")
    if fit.fits:
        same = "the same graph" if fit.same_graph else f"written for graph {str(fit.checkpoint_hash)[:12]}, this is {fit.graph_hash[:12]}"
        click.echo(f"# fits: all {fit.matching} variables match ({same})")
    else:
        click.echo(f"# does not fit: {len(fit.missing)} missing, {len(fit.extra)} extra, {len(fit.mismatched)} differ; {fit.matching} match")
