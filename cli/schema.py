import json

import click


@click.command("schema")
def command() -> None:
    """Print the JSON Schema of the spec format, for editors and YAML language servers.

    \b
    Example:
      tfn schema > tfn-spec.schema.json
    """
    from tfn.specs import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
