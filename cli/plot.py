import click


@click.command("plot")
@click.argument("runs", metavar="RUN...", nargs=-1, required=True)
@click.option("--metric", "metrics", multiple=True, metavar="NAME", help="A logged metric to draw, one panel each (repeatable). Default: loss.")
@click.option("-o", "--output", default="curves.png", show_default=True, type=click.Path(dir_okay=False), help="The picture: .png, .svg or .pdf.")
def command(runs, metrics, output) -> None:
    """Draw the curves of one or more runs in one picture, from their
    metrics.jsonl: a colour per run, the training values thin, validation as
    a line with dots, the test figure as a star, against the step. A
    directory of runs (runs/NAME, a sweep) stands for every run in it.

    Needs matplotlib: pip install matplotlib (or tfn's extra: pip install -e '.[plot]').

    \b
    Examples:
      tfn plot runs/digits_cnn/1 runs/digits_cnn/2 -o curves.png
      tfn plot runs/digits_cnn --metric loss --metric accuracy -o report.svg
    """
    from tfn.runners.plot import plot_runs

    path = plot_runs(list(runs), output, list(metrics) or ["loss"])
    click.echo(f"wrote {path}", err=True)
