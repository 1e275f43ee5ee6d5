import signal
import sys

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
def command(target, overrides, out, runs_root, device, epochs, steps, seed, resume_dir, init_from, strict, quiet) -> None:
    """Train SPEC and write a run directory: resolved spec.yaml, graph.json,
    checkpoints/, TensorBoard events (train/, validation/), metrics.jsonl, run.json.

    Ctrl-C or SIGTERM writes a checkpoint and stops (exit status 128 + the
    signal's number); `--resume RUN_DIR` continues from it. A loss that
    becomes NaN or infinite stops the run with exit status 1.

    \b
    Examples:
      tfn train digits_cnn
      tfn train my.yaml --set optimizer.learning_rate=0.01 --epochs 3
      tfn train --resume runs/digits_cnn/1
      tfn train my.yaml --init-from runs/digits_cnn/1 --strict
      tensorboard --logdir runs
    """
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
    if result.stopped in ("SIGTERM", "SIGINT"):
        click.echo(f"{result.run_dir}: stopped by {result.stopped} at step {result.steps}; checkpoint written; continue with: tfn train --resume {result.run_dir}", err=True)
        sys.exit(128 + getattr(signal, result.stopped))
    summary = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.get("test", {}).items())
    note = " (early stopping)" if result.stopped == "early_stopping" else ""
    click.echo(f"{result.run_dir}: {result.steps} steps{note}; test {summary}" if summary else f"{result.run_dir}: {result.steps} steps{note}")
