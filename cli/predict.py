import json

import click

from tfn.cli.options import as_json


@click.command("predict")
@click.argument("target", metavar="TARGET")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option("--checkpoint", metavar="CKPT", help="Weights: a checkpoint file, checkpoints directory or run directory. Default: a run's latest.")
@click.option("-k", "--top-k", default=3, show_default=True, type=click.IntRange(min=1), help="How many classes to show per input.")
@click.option("--labels", type=click.Path(dir_okay=False, exists=True), help="Class names, one per line (default: the run's data source).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@as_json
def command(target, inputs, checkpoint, top_k, labels, device, as_json) -> None:
    """Class probabilities and the top-k classes for each of INPUTS (.npy/.npz
    arrays, one sample or a batch, and image files), from the model's first
    output through a softmax. TARGET is a run directory, spec, example name
    or graph.json.

    \b
    Examples:
      tfn predict runs/digits_cnn/1 seven.png three.png
      tfn predict runs/digits_cnn/1 batch.npy --top-k 1 --json
    """
    from pathlib import Path

    from tfn.runners.session import class_names, initial_weights_note, load_model, predict, read_examples

    model = load_model(target, checkpoint, device=device)
    note = initial_weights_note(target, checkpoint)
    if note:
        click.echo(note, err=True)
    batch, sources = read_examples(model, inputs)
    names = Path(labels).read_text(encoding="utf-8").splitlines() if labels else class_names(target)
    result = predict(model, batch, top_k=top_k, class_names=names, sources=sources)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    width = max(len(s) for s in result.sources)
    for source, top in zip(result.sources, result.top):
        cells = "   ".join(f"{name} {p:6.2%}" for _, name, p in top)
        click.echo(f"{source.ljust(width)}   {cells}")
