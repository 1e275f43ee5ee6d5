import json

import click


@click.command("import")
@click.argument("source", metavar="FILE")
@click.option("-o", "--out", type=click.Path(file_okay=False), help="The model directory to write (new or empty).")
@click.option("--list", "listing", is_flag=True, help="Print each layer or op with the tfn op it maps to (or why none); write nothing.")
@click.option("--outputs", metavar="NAME[,NAME]", help="TF graphs and ONNX: the nodes whose values are the model's outputs (default: the graph's one inference end).")
@click.option("--spec", metavar="SPEC", help="TF 1.x checkpoints: load the weights into this spec's graph by variable name instead of reading the .meta.")
@click.option(
    "--input-layout",
    type=click.Choice(["nchw", "nhwc"], case_sensitive=False),
    default="nchw",
    show_default=True,
    help="nhwc: keep the original's features-last inputs (a transpose node after each input) for arrays fed as to Keras.",
)
@click.option("--verify", is_flag=True, help="Run the original (needs TensorFlow, or onnxruntime for ONNX) and the import on random inputs; exit 1 above --tolerance.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True, help="--verify: the largest absolute difference accepted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (--list, and the import's record).")
def command(source, out, listing, outputs, spec, input_layout, verify, tolerance, as_json) -> None:
    """Import FILE as a tfn model directory: spec.yaml (the original layer
    names as node names), graph.json, checkpoints/ (weights under TF variable
    names) and import.json (source, format, SHA-256, what became what).

    \b
    FILE is a Keras 3 .keras, a tf.keras .h5, a frozen TensorFlow GraphDef .pb,
    a TF 1.x checkpoint (its prefix, .index or .meta; read without TensorFlow)
    or an .onnx file. Every verb takes the directory: check, run, predict,
    train --init-from, export-graph, inspect-checkpoint.

    \b
    A layer or op tfn has no counterpart for is an error that lists each one
    with its name, kind and place (exit status 2).

    \b
    Examples:
      tfn import model.keras -o imported/
      tfn import model.keras --list
      tfn import frozen.pb -o imported/ --outputs probabilities
      tfn import model.ckpt -o imported/              # model.ckpt.index, .data-*, .meta
      tfn import model.onnx -o imported/ --verify
      tfn check imported/spec.yaml && tfn run imported --feed image=x.npy
    """
    from tfn.runners.importers import ImportFailed, into_spec, read, write

    if not listing and not out:
        raise click.UsageError("give -o/--out DIR (or --list to see the mapping without writing)")
    if spec and not listing:
        record, report = into_spec(source, spec, out)
        click.echo(json.dumps(record, indent=2) if as_json else f"imported {source} into {spec} -> {out}")
        click.echo(report.describe(), err=True)
        return
    names = [o.strip() for o in outputs.split(",") if o.strip()] if outputs else None
    try:
        imported = read(source, outputs=names, spec=spec, input_layout=input_layout.lower())
    except ImportFailed as exc:
        if listing and getattr(exc, "rows", None) is not None:
            _print_rows(exc.rows, as_json)
            return
        raise
    if listing:
        _print_rows(imported.builder.rows, as_json)
        return
    record = write(imported, out)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        params = record["parameters"]
        click.echo(f"imported {source} ({imported.format}) -> {out}: {len(imported.builder.nodes)} nodes, "
                   f"{params['trainable'] + params['non_trainable']:,} parameters ({params['trainable']:,} trainable)")
        for name, node in record["outputs"].items():
            click.echo(f"  output {name} -> {node}")
        for note in imported.notes:
            click.echo(f"note: {note}", err=True)
    if verify:
        from tfn.runners.importers.verify import verify as compare

        worst = 0.0
        for d in compare(imported, out):
            click.echo(f"verify {d.output} ({d.node}): max abs difference {d.max_abs:.3g}, max relative {d.max_rel:.3g}")
            worst = max(worst, d.max_abs)
        if worst > tolerance:
            click.echo(f"error: --verify: the import differs from the original by {worst:.3g}, above --tolerance {tolerance:g}", err=True)
            raise SystemExit(1)
        click.echo(f"verify: within {tolerance:g}")


def _print_rows(rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from tfn.cli.table import table

    lines = [("layer / op", "kind", "tfn", "where")]
    for r in rows:
        target = f"{r['op']} ({r['node']})" if r["op"] else r["reason"] if r["kind"] == "input" or r["reason"].startswith("not converted") else f"no mapping: {r['reason']}"
        lines.append((r["source"], r["kind"], target, r["where"]))
    for line in table(lines, left=4):
        click.echo(line)
    missing = sum(1 for r in rows if r["op"] is None and r["kind"] != "input" and not r["reason"].startswith("not converted"))
    click.echo(f"\n{len(rows)} entries, {missing} without a mapping")
