import signal
import sys
from pathlib import Path

import click

from tfn.cli.options import overrides


@click.command("train")
@click.argument("target", metavar="SPEC", required=False)
@overrides
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (must be new or empty). Default: runs/<name>/<N>.")
@click.option("--runs", "runs_root", default="runs", show_default=True, type=click.Path(file_okay=False), help="Where numbered run directories go.")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: the spec's train.device).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override train.epochs.")
@click.option("--steps", type=click.IntRange(min=1), help="Stop after this many steps in all (overrides epochs).")
@click.option("--seed", type=int, help="Override train.seed.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), metavar="RUN_DIR", help="Continue RUN_DIR in place from its latest checkpoint.")
@click.option("--init-from", type=click.Path(), metavar="CKPT", help="Start from the weights of CKPT (a file or run), matched by variable name.")
@click.option("--strict", is_flag=True, help="With --init-from: any missing, unexpected or wrong-shape variable is an error.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train in N processes on this machine with DistributedDataParallel (gloo on CPU; NCCL and one GPU each on CUDA). "
    "data.batch_size is the global batch. Under torchrun, torchrun's --nproc-per-node decides instead.",
)
def command(target, overrides, out, runs_root, device, epochs, steps, seed, resume_dir, init_from, strict, quiet, nproc) -> None:
    """Train SPEC and write a run directory: resolved spec.yaml, graph.json,
    checkpoints/, TensorBoard events (train/, validation/), metrics.jsonl, run.json.
    SPEC may be a model directory (a run, or a `tfn import` output): its
    spec.yaml, from initial weights unless --init-from names the weights.

    Ctrl-C or SIGTERM writes a checkpoint and stops (exit status 128 + the
    signal's number); `--resume RUN_DIR` continues from it. A loss that
    becomes NaN or infinite stops the run with exit status 1.

    \b
    Examples:
      tfn train digits_cnn
      tfn train my.yaml --set optimizer.learning_rate=0.01 --epochs 3
      tfn train --resume runs/digits_cnn/1
      tfn train my.yaml --init-from runs/digits_cnn/1 --strict
      tfn train digits_cnn --nproc 2 --set train.sync_batchnorm=true
      torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m tfn.cli.main train my.yaml --out /shared/runs/a
      tensorboard --logdir runs
    """
    if nproc > 1:
        from tfn.runners.distributed import launched

        if not launched():
            _launch(nproc, target, resume_dir, overrides)
            return
    command_line = ["tfn", *sys.argv[1:]]
    if resume_dir:
        given = [o for o, v in (("SPEC", target), ("--set", overrides), ("--out", out), ("--seed", seed), ("--init-from", init_from)) if v]
        if given:
            raise click.UsageError(f"--resume continues a run with its own spec and settings; drop {', '.join(given)}")
        from tfn.runners.train import resume

        result = resume(resume_dir, device=device, epochs=epochs, steps=steps, quiet=quiet, command=command_line)
    else:
        if target is None:
            raise click.UsageError("missing SPEC (or --resume RUN_DIR)")
        if strict and not init_from:
            raise click.UsageError("--strict goes with --init-from")
        from tfn.runners.train import train
        from tfn.specs import load

        settings = list(overrides) + ([f"train.seed={seed}"] if seed is not None else [])
        if not init_from and Path(target).is_dir() and (Path(target) / "checkpoints").is_dir():
            click.echo(f"note: training the spec of {target} from initial weights; --init-from {target} starts from its weights", err=True)
        result = train(
            load(target, settings),
            runs_root=runs_root,
            out=out,
            device=device,
            epochs=epochs,
            steps=steps,
            quiet=quiet,
            command=command_line,
            init_from=init_from,
            strict=strict,
        )
    from tfn.runners.distributed import rank

    reporter = rank() == 0  # one line for the whole job
    if result.stopped in ("SIGTERM", "SIGINT"):
        if reporter:
            click.echo(f"{result.run_dir}: stopped by {result.stopped} at step {result.steps}; checkpoint written; continue with: tfn train --resume {result.run_dir}{_nproc_option()}", err=True)
        sys.exit(128 + getattr(signal, result.stopped))
    if not reporter:
        return
    click.echo(final_line(result))


def final_line(result) -> str:
    """`RUN: N steps; test loss ..., accuracy ... (weights of ...)`: what the test figures and the run's model are."""
    summary = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.get("test", {}).items())
    note = " (early stopping)" if result.stopped == "early_stopping" else ""
    weights = result.weights or {}
    best = weights.get("best")
    if best:
        source = f"weights of step {weights['step']}, the best validation {best['metric']} {best['value']:.4f}"
    else:
        source = "weights of the last step"
    figures = f"; test {summary} ({source})" if summary else f"; final {source}"
    return f"{result.run_dir}: {result.steps} steps{note}{figures}"


def _launch(nproc: int, target, resume_dir, overrides) -> None:
    """Start this same command in `nproc` processes (each one a rank: RANK/WORLD_SIZE/LOCAL_RANK); exit with theirs."""
    from tfn.runners.distributed import LaunchFailed, launch
    from tfn.specs import load

    if not resume_dir and target is not None:
        load(target, list(overrides))  # a spec error shows once, not once per process
    ctx = click.get_current_context()
    args = ["--debug"] if ctx.find_root().params.get("debug") else []
    args += ["train", *_given_options(ctx)]
    try:
        launch(nproc, [sys.executable, "-m", "tfn.cli.main", *args])
    except LaunchFailed as exc:
        if str(exc):
            click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_status)


def _given_options(ctx: click.Context) -> list[str]:
    """The command's arguments and options as given (from the parsed values, so any caller's argv works)."""
    args = []
    for param in ctx.command.params:
        value = ctx.params[param.name]
        if param.name == "nproc" or value is None or value is False or value == ():
            continue
        if isinstance(param, click.Argument):
            args.append(str(value))
        elif param.is_flag:
            args.append(param.opts[0])
        else:
            args += [item for v in (value if param.multiple else [value]) for item in (param.opts[0], str(v))]
    return args


def _nproc_option() -> str:
    """` --nproc N` when this process is one of N ranks on this machine (how to resume the same job)."""
    import os

    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return f" --nproc {local}" if local > 1 else ""
