import json

import click

from tfn.cli.options import as_json
from tfn.cli.table import table


@click.command("diff")
@click.argument("a", metavar="RUN_OR_SPEC_A")
@click.argument("b", metavar="RUN_OR_SPEC_B")
@click.option("--metric", metavar="NAME", help="The validation metric whose best value is compared (default: each run's headline metric, as tfn runs).")
@as_json
def command(a, b, metric, as_json) -> None:
    """Two runs (or specs, or one of each) side by side: the fields of the
    resolved specs that differ, as --set names them, then for two runs their
    status, steps, duration, best validation value and final validation and
    test figures, with B - A.

    A run's spec is its spec.yaml (every default filled in, data paths
    absolute); a spec file or example is resolved the same way.

    \b
    Examples:
      tfn diff runs/digits_cnn/1 runs/digits_cnn/2
      tfn diff digits_cnn my.yaml
      tfn diff runs/digits_cnn/1 runs/digits_cnn/2 --json
    """
    from tfn.runners.runs import MISSING, diff, format_duration

    result = diff(a, b, metric)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if result.fields:
        click.echo(f"spec: {len(result.fields)} field{'s' if len(result.fields) != 1 else ''} differ{'s' if len(result.fields) == 1 else ''}")
        rows = [("field", "A", "B")] + [(field, _value(x, MISSING), _value(y, MISSING)) for field, x, y in result.fields]
        for line in table(rows, left=3):
            click.echo("  " + line)
    else:
        click.echo("spec: no field differs")
    if not result.figures:
        return
    click.echo("")
    rows = [("figure", "A", "B", "B - A")]
    for figure, x, y in result.figures:
        change = ""
        if _is_number(x) and _is_number(y):
            change = f"{y - x:+.4f}" if isinstance(x, float) or isinstance(y, float) else f"{y - x:+d}"
        if figure == "duration_seconds":
            figure, x, y, change = "duration", *(format_duration(v) if v is not None else "-" for v in (x, y)), ""
        rows.append((figure, _figure(x), _figure(y), change))
    for line in table(rows, left=1):
        click.echo("  " + line)
    click.echo(f"\nA: {result.a.label}\nB: {result.b.label}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value(value, missing) -> str:
    if value is missing:
        return "(absent)"
    return json.dumps(value) if not isinstance(value, str) else value


def _figure(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
