"""The `tfn` command. Commands load lazily, so `tfn --help` imports no torch.

Each command module parses options, calls one library function and renders
the result. Errors the user can fix print as `FILE:LINE:COL: error: ...` and
exit 2; a failed run exits 1; --debug shows the traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

COMMANDS = {
    "check": ("tfn.cli.check", "Validate a spec, compile it and print nodes, shapes, parameters and FLOPs."),
    "train": ("tfn.cli.train", "Train a spec; write a run directory with checkpoints and TensorBoard logs."),
    "eval": ("tfn.cli.eval", "Evaluate a checkpoint on a data split and print the metrics."),
    "export-graph": ("tfn.cli.export_graph", "Write the graph as graph.json, ONNX, a picture (dot/svg/png) or a TensorBoard log."),
    "inspect-checkpoint": ("tfn.cli.inspect_checkpoint", "List, print, compare or check a checkpoint's variables."),
    "schema": ("tfn.cli.schema", "Print the JSON Schema of the spec format (for editors)."),
    "run": ("tfn.cli.run", "Feed inputs and fetch any nodes' outputs (Session.run), computing only what is needed."),
    "predict": ("tfn.cli.predict", "Class probabilities and top-k labels for arrays or images."),
    "time": ("tfn.cli.time", "Forward and backward time of every node (caffe time), with samples/s."),
    "import": ("tfn.cli.import_model", "Import a Keras (.keras/.h5), TensorFlow (.pb, TF 1.x checkpoint) or ONNX model as a tfn model directory."),
    "layers": ("tfn.cli.layers", "List the ops by family, or show one op's attributes, shapes and TF notes."),
    "runs": ("tfn.cli.runs", "A table of runs: status, steps, best/final validation and test metric, duration; filter and sort."),
    "diff": ("tfn.cli.diff", "Two runs or specs side by side: the spec fields that differ, then the runs' figures."),
    "plot": ("tfn.cli.plot", "Loss and metric curves of several runs in one picture (PNG, SVG or PDF; needs matplotlib)."),
    "sweep": ("tfn.cli.sweep", "Search hyperparameters with Optuna: every trial a run; one machine or many on one study."),
}


#: errors of a run that failed (exit status 1), as opposed to the user's input (2)
FAILED_RUNS = (("tfn.runners.train", "TrainingFailed"), ("tfn.runners.data", "DataLoaderFailed"), ("tfn.runners.sweep", "SweepFailed"))


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name][0]).command

    def format_commands(self, ctx, formatter):
        # the short help comes from the table above: listing commands imports none of them
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and name not in COMMANDS and not name.startswith("-"):
            from difflib import get_close_matches

            close = get_close_matches(name, COMMANDS, n=1)
            raise click.UsageError(f"no such command {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.version_option(package_name="tfn", prog_name="tfn")
def cli(debug: bool) -> None:
    """tfn: TensorFlow 1.x-style dataflow graphs from a YAML/TOML spec, trained on PyTorch."""


def _is(exc: BaseException, module: str, name: str) -> bool:
    # only modules already imported can have raised their errors: no import here
    mod = sys.modules.get(module)
    return mod is not None and isinstance(exc, getattr(mod, name))


def report(exc: Exception) -> tuple[int, str]:
    """(exit status, message) for an error that ended a command.

    2: the user's input is wrong (tfn.layers.base.UserError and its subclasses);
    1: the run itself failed (diverged, a data loader died, too many trials of a sweep); anything else is a
    bug in tfn, reported as an internal error.
    """
    if _is(exc, "tfn.layers.base", "UserError"):
        return 2, str(exc)
    if any(_is(exc, module, name) for module, name in FAILED_RUNS):
        return 1, f"error: {exc}"
    return 1, f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        cli.main(argv, prog_name="tfn", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        status, message = report(exc)
        click.echo(message, err=True)
        sys.exit(status)


if __name__ == "__main__":
    main()
