import json

import click

from tfn.cli.options import as_json


@click.command("predict")
@click.argument("target", metavar="TARGET")
@click.argument("inputs", nargs=-1, metavar="[INPUTS]...")
@click.option("--text", "texts", multiple=True, metavar="TEXT", help="A text to predict for (repeatable), for a model trained on a text source.")
@click.option("--checkpoint", metavar="CKPT", help="Weights: a checkpoint file, checkpoints directory or run directory. Default: a run's latest.")
@click.option("-k", "--top-k", default=3, show_default=True, type=click.IntRange(min=1), help="softmax: how many classes to show per input.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), help="sigmoid: the probability from which a label is predicted (default 0.5).")
@click.option("--labels", type=click.Path(dir_okay=False, exists=True), help="Class names, one per line (default: the run's data source).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the predictions to this file instead of stdout.")
@as_json
def command(target, inputs, texts, checkpoint, top_k, threshold, labels, device, output, as_json) -> None:
    """Predictions for each of INPUTS (.npy/.npz arrays, one sample or a
    batch; image files; CSV files, one prediction per row; files go through
    the model's preprocessing record), read as the model's loss reads its
    output: the class probabilities and the top-k classes after a softmax
    (softmax cross-entropy losses); a probability per label after a sigmoid,
    and the labels at or above --threshold (sigmoid cross-entropy; with one
    unit, the positive class's probability and the predicted class); the raw
    values (regression losses). TARGET is a run directory, spec, example
    name or graph.json.

    --text gives texts instead of files, for a model trained on a text
    source: each goes through the record's tokenisation and vocabulary into
    every input the model reads (token ids, lengths).

    A CSV file needs the columns the model's input is made from (the label
    column may be absent); a bad value is an error naming its line. Its
    predictions come out as CSV, a line per row with the row number and
    its line in the file (--json: JSON).

    \b
    Examples:
      tfn predict runs/digits_cnn/1 seven.png three.png
      tfn predict runs/digits_cnn/1 batch.npy --top-k 1 --json
      tfn predict runs/spam/1 emails.npy --threshold 0.9
      tfn predict runs/tabular/1 rows.csv -o predictions.csv
      tfn predict runs/text_lstm/1 --text "the food was not good, but the service was great"
    """
    if bool(inputs) == bool(texts):
        raise click.UsageError("give INPUTS (files) or --text, one of the two")
    from pathlib import Path

    from tfn.runners.session import class_names, initial_weights_note, load_model, predict

    model = load_model(target, checkpoint, device=device)
    note = initial_weights_note(target, checkpoint)
    if note:
        click.echo(note, err=True)
    names = Path(labels).read_text(encoding="utf-8").splitlines() if labels else class_names(target)
    given = {"texts": list(texts)} if texts else {"inputs": list(inputs)}
    result = predict(model, **given, top_k=top_k, threshold=threshold, class_names=names)
    if as_json:
        text = json.dumps(result.to_dict(), indent=2) + "\n"
    elif any(Path(i).suffix.lower() == ".csv" for i in inputs):
        text = result.to_csv()
    else:
        width = max(len(s) for s in result.sources)
        text = "".join(f"{source.ljust(width)}   {_cells(result, i)}\n" for i, source in enumerate(result.sources))
    if output:
        from tfn.runners.files import atomic_write

        atomic_write(output, text.encode("utf-8"))
        click.echo(f"wrote {len(result.sources)} predictions to {output}", err=True)
    else:
        click.echo(text, nl=False)


def _cells(result, i: int) -> str:
    if result.kind == "softmax":
        return "   ".join(f"{name} {p:6.2%}" for _, name, p in result.top[i])
    if result.one_unit:
        ((_, name, p),) = result.top[i]
        return f"{name}   positive-class probability {p:.4f} (threshold {result.threshold:g})"
    if result.kind == "sigmoid":
        return "   ".join(f"{name} {p:6.2%}" for _, name, p in result.top[i]) or f"(no label reaches {result.threshold:g})"
    return " ".join(f"{v:.6g}" for v in result.values[i].ravel())
