"""Options several commands share."""

from __future__ import annotations

import click

spec_target = click.argument("target", metavar="SPEC")
overrides = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec field, e.g. train.epochs=3 or model.layers.3.filters=64."
)
as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
