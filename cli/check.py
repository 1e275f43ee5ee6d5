import json

import click

from tfn.cli.options import as_json, overrides, spec_target


@click.command("check")
@spec_target
@overrides
@as_json
def command(target: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Validate SPEC (a .yaml/.toml file, a shipped example name, or a model
    directory: a run or a `tfn import` output, whose spec.yaml is checked),
    compile it to the graph and print every node with its output shape,
    parameters and FLOPs.

    FLOPs are forward floating-point operations for one sample (a
    multiply-add counts 2).

    Every problem in the spec is reported at once, as FILE:LINE:COL: error: ...;
    the exit status is then 2.

    The data section is checked against the graph from cheap metadata only
    (the source's declaration, npz/npy and IDX headers, a CSV's header line,
    one image of an image folder), never by loading the data: a missing
    file, array or column, a model input or label without a data field, a
    field of another shape or dtype, more classes than the logits. What that
    cannot check is listed.

    \b
    In the table, `^b` after the inputs is a control edge (runs after b),
    `@cuda:0` after a name is its placement, and `=a` in the parameters
    column means the node reuses the variables of node a.

    \b
    Examples:
      tfn check lenet5
      tfn check spec.yaml --set model.layers.3.filters=64 --json
      tfn check imported/
    """
    from tfn.runners.data_check import check_data
    from tfn.specs import SpecError, load
    from tfn.specs.summary import format_bytes, summarize

    loaded = load(target, overrides)
    data = check_data(loaded.graph, loaded.spec.data, loaded.doc)
    if data.problems:
        raise SpecError(data.problems)
    summary = summarize(loaded.graph)
    if as_json:
        click.echo(json.dumps({**summary.to_dict(), "data": data.to_dict()}, indent=2))
        return
    rows = [("node", "op", "inputs", "output", "params", "FLOPs/sample")]
    for r in summary.nodes:
        inputs = ", ".join(r.inputs) + "".join(f" ^{a}" for a in r.after)
        name = r.name + (f" @{r.device}" if r.device else "")
        params = f"={r.shares}" if r.shares else f"{r.parameters:,}"
        rows.append((name, r.op, inputs, r.output, params, f"{r.flops:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        line = "  ".join(cell.rjust(w) if i >= 4 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        click.echo(line.rstrip())
        if k == 0:
            click.echo("  ".join("-" * w for w in widths))
    inputs = ", ".join(f"{k} {v}" for k, v in summary.inputs.items())
    click.echo(f"\n{summary.name}: inputs {inputs}")
    click.echo(
        f"parameters: {summary.trainable_parameters + summary.non_trainable_parameters:,} "
        f"({summary.trainable_parameters:,} trainable, {summary.non_trainable_parameters:,} non-trainable)"
    )
    click.echo(f"forward FLOPs per sample: {summary.flops_per_sample:,}")
    memory, batch = summary.memory, loaded.spec.data.batch_size
    click.echo(
        f"memory: {format_bytes(memory.parameter_bytes)} of variables + {format_bytes(memory.activation_bytes_per_sample)} of activations per sample"
        + (f" (at least {format_bytes(memory.for_batch(batch))} for a batch of {batch})" if isinstance(batch, int) else "")
    )
    fields = ", ".join(f"{name} {f}" for name, f in data.fields.items())
    classes = f", {data.classes} classes" if data.classes is not None else ""
    click.echo(f"data: source {data.source} gives {fields}{classes}: they fit the graph's inputs")
    for item in data.unchecked:
        click.echo(f"  not checked without reading the data: {item}")
