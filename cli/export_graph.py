from pathlib import Path

import click

FORMATS = ("json", "onnx", "dot", "svg", "png", "tensorboard")
_BY_SUFFIX = {".json": "json", ".onnx": "onnx", ".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png"}


@click.command("export-graph")
@click.argument("target", metavar="TARGET")
@click.option("-o", "--output", type=click.Path(), help="File to write (a directory for tensorboard). Default: standard output for json, dot and svg.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the --output suffix, else json.")
@click.option("--checkpoint", metavar="CKPT", help="onnx: embed these trained weights (default: a run's latest, else the initial weights).")
def command(target: str, output: str | None, fmt: str | None, checkpoint: str | None) -> None:
    """Write the graph of TARGET (a spec, a shipped example name, a graph.json
    or a run directory):

    \b
      json         graph.json, the graph definition (structure only, no weights)
      onnx         an ONNX model (opset 18, dynamic batch) with weights embedded
      dot/svg/png  a picture: data edges solid with shapes, control edges dashed,
                   name scopes as boxes (svg and png need Graphviz's `dot`)
      tensorboard  a log directory whose Graphs tab shows the model

    \b
    Examples:
      tfn export-graph digits_cnn -o graph.json
      tfn export-graph runs/digits_cnn/1 -o model.onnx
      tfn export-graph digits_cnn -o graph.svg
      tfn export-graph digits_cnn --format tensorboard -o logs/graph && tensorboard --logdir logs
    """
    from tfn.specs.errors import UserError

    if fmt is None:
        fmt = _BY_SUFFIX.get(Path(output).suffix.lower(), "json") if output else "json"
    if checkpoint and fmt != "onnx":
        raise UserError(f"--checkpoint: error: only --format onnx holds weights; {fmt} is structure only")
    if output is None and fmt in ("onnx", "png", "tensorboard"):
        raise UserError(f"--format {fmt}: error: give -o/--output: " + ("a log directory" if fmt == "tensorboard" else f"a .{fmt} file"))

    if fmt == "onnx":
        from tfn.runners.export import onnx_bytes
        from tfn.runners.session import initial_weights_note, load_model

        model = load_model(target, checkpoint)
        note = initial_weights_note(target, checkpoint)
        if note:
            click.echo(note, err=True)
        _write(output, onnx_bytes(model))
        return
    from tfn.specs import load_graph

    graph = load_graph(target)
    if fmt == "tensorboard":
        from tfn.runners.export import write_tensorboard

        path = write_tensorboard(graph, output)
        click.echo(f"wrote {path}; view it with: tensorboard --logdir {output}", err=True)
        return
    if fmt == "json":
        data = graph.to_json()
    else:
        from tfn.runners.export import render, to_dot

        data = to_dot(graph)
        if fmt != "dot":
            data = render(data, fmt)
    _write(output, data)


def _write(output: str | None, data: str | bytes) -> None:
    if output is None:
        click.echo(data.decode() if isinstance(data, bytes) else data, nl=False)
        return
    from tfn.runners.files import atomic_write

    atomic_write(output, data)
    click.echo(f"wrote {output}", err=True)
