import json

import click

from tfn.cli.options import as_json
from tfn.cli.table import table


@click.command("runs")
@click.argument("root", metavar="DIR", default="runs", required=False)
@click.option("--metric", metavar="NAME", help="The validation metric to show and rank by (default: per run; see below).")
@click.option(
    "--where",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only runs whose KEY (a --json field) is VALUE; KEY!=VALUE: is not; VALUE may be a,b (either). Repeatable: all must hold.",
)
@click.option(
    "--sort",
    metavar="COLUMN",
    help="started, name, number, status, steps, best, final, test or duration; metrics best first. "
    "Default: started, or best for the trials of one sweep.",
)
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@as_json
def command(root, metric, where, sort, reverse, as_json) -> None:
    """A table of the runs under DIR (default: runs), found by their run.json
    at any depth: name, N (the run's directory), status, steps, the best and
    final validation value of the headline metric (and the step of the best),
    its test value, duration and start time.

    The headline metric is --metric, else the metric the run's sweep
    optimises, else train.checkpoints.best, else the first of train.metrics,
    else loss. Statuses are run.json's (running, completed, interrupted,
    failed, pruned, ...), shown as they are.

    \b
    Examples:
      tfn runs
      tfn runs runs/digits_cnn --where status=completed --sort best
      tfn runs sweeps/lr/1                        # a sweep's trials, best first
      tfn runs --where status!=failed --metric loss --json
    """
    from tfn.runners.runs import format_duration, list_runs

    rows = list_runs(root, metric=metric, where=list(where), sort=sort, reverse=reverse)
    if as_json:
        click.echo(json.dumps([row.to_dict() for row in rows], indent=2))
        return
    if not rows:
        click.echo(f"no runs under {root}" + (" match " + " and ".join(where) if where else ""), err=True)
        return
    metrics = {row.metric for row in rows}
    shared = metrics.pop() if len(metrics) == 1 else None
    # the metric gets a column of its own only when the runs rank by different ones
    header = ("name", "N", "status") + (() if shared else ("metric",))
    header += ("steps", f"best {shared}" if shared else "best", "at step", "final", "test", "duration", "started")
    lines = [header]
    for row in rows:
        cells = (row.name, row.number, row.status) + (() if shared else (row.metric or "-",))
        duration = format_duration(row.duration_seconds) if row.duration_seconds is not None else "-"
        lines.append(cells + (_cell(row.steps), _cell(row.best), _cell(row.best_step), _cell(row.final), _cell(row.test), duration, _local(row.started)))
    for line in table(lines, left=3 if shared else 4):
        click.echo(line)
    for row in rows:
        if row.error:
            click.echo(f"warning: {row.error}", err=True)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _local(started: str | None) -> str:
    """An ISO time (UTC) as local YYYY-MM-DD HH:MM."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(started).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return "-"
