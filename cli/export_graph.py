import click


@click.command("export-graph")
@click.argument("target", metavar="TARGET")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
def command(target: str, output: str | None) -> None:
    """Write the graph definition of TARGET (a spec, a shipped example name,
    a graph.json or a run directory) as graph.json: structure only, no weights.

    \b
    Example:
      tfn export-graph digits_cnn -o graph.json
    """
    from tfn.specs import load_graph

    text = load_graph(target).to_json()
    if output is None:
        click.echo(text, nl=False)
        return
    from tfn.runners.files import atomic_write

    atomic_write(output, text)
    click.echo(f"wrote {output}", err=True)
