import click


@click.command("run")
@click.argument("target", metavar="TARGET")
@click.option("--checkpoint", metavar="CKPT", help="Weights: a checkpoint file, checkpoints directory or run directory. Default: a run's latest, else the initial weights.")
@click.option("--feed", "feeds", multiple=True, metavar="NAME=VALUE", help="Feed an input (or any node): a .npy/.npz/image/.csv file or a literal such as '[[1.0, 2.0]]'. Repeatable.")
@click.option("--fetch", "fetches", multiple=True, metavar="NODE[,NODE...]", help="Nodes to compute ('node' or 'node:1'). Default: the model's outputs.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the fetched values to this .npz file.")
@click.option("--full", is_flag=True, help="Print values in full instead of summarised with '...'.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
def command(target, checkpoint, feeds, fetches, out, full, device) -> None:
    """Feed values into TARGET (a spec, shipped example, graph.json or run
    directory) and fetch any nodes' outputs, as TF's Session.run: only the
    part of the graph the fetches need is computed. A single sample gains a
    batch axis. Arrays are cast as TF's feed_dict casts (a value that would
    change is refused); an image file, the rows of a CSV file, and an array
    for a field the run normalised (npz/npy `normalize`) go through the
    model's preprocessing record (resize, colour, scale, mean/std, CSV
    columns, statistics), as training saw them.

    \b
    Examples:
      tfn run runs/digits_cnn/1 --feed image=digits.npy --fetch conv1,logits --out acts.npz
      tfn run digits_cnn --feed image=seven.png --fetch logits
      tfn run spec.yaml --feed x='[[1.0, 2.0], [1.0, 2.0]]' --fetch sigmoid
      tfn run runs/tabular/1 --feed x=rows.csv --fetch logits
    """
    from tfn.runners.session import feed_notes, initial_weights_note, load_model, read_feeds, run, save_npz, split_fetches
    from tfn.runners.inspect import format_value

    model = load_model(target, checkpoint, device=device)
    note = initial_weights_note(target, checkpoint)
    if note:
        click.echo(note, err=True)
    values = read_feeds(model.graph, feeds, model.preprocessing)
    for line in feed_notes(model, feeds):
        click.echo(f"# {line}", err=True)
    result = run(model, values, split_fetches(fetches) or None)
    total = len(model.graph.nodes)
    click.echo(f"# computed {len(result.computed)} of {total} nodes: {', '.join(result.computed) or 'none'}", err=True)
    for name, value in result.values.items():
        click.echo(f"{name}: {value.dtype} {list(value.shape)}")
        click.echo(format_value(value, full))
    if out:
        save_npz(out, result.values)
        click.echo(f"wrote {out}", err=True)
