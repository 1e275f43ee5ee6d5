import json

import click

from tfn.cli.options import as_json


@click.command("layers")
@click.argument("name", required=False)
@as_json
def command(name: str | None, as_json: bool) -> None:
    """List every op by family, or show one op: its documentation, attributes
    (type, default), shape rule and notes for TensorFlow users.

    \b
    Examples:
      tfn layers
      tfn layers conv2d
      tfn layers --json
    """
    from tfn.layers import UnknownOpError, catalogue
    from tfn.specs.errors import UserError

    if name is None:
        families = catalogue.families()
        if as_json:
            click.echo(json.dumps({f: [{"name": n, "summary": s} for n, s in ops] for f, ops in families.items()}, indent=2))
            return
        width = max(len(n) for ops in families.values() for n, _ in ops)
        for family, ops in families.items():
            click.echo(f"{family}:")
            for op_name, summary in ops:
                click.echo(f"  {op_name:<{width}}  {summary}")
        click.echo("\n`tfn layers NAME` shows an op's attributes.")
        return
    try:
        info = catalogue.describe(name)
    except UnknownOpError as exc:
        raise UserError(f"{name}: error: {exc}; `tfn layers` lists them") from None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{info['name']}  ({info['family']}; inputs: {info['inputs']})\n")
    click.echo(info["doc"])
    click.echo("\nAttributes:")
    if not info["attributes"]:
        click.echo("  (none)")
    rows = [(a["name"], "(required)" if a["required"] else f"= {json.dumps(a['default'])}", a["type"]) for a in info["attributes"]]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(2)]
    for attr, default, kind in rows:
        click.echo(f"  {attr:<{widths[0]}}  {default:<{widths[1]}}  {kind}")
    if info["tf_notes"]:
        click.echo(f"\nTensorFlow: {info['tf_notes']}")
