import json
import os
import signal
import socket
import sys

import click

from tfn.cli.options import as_json, overrides


@click.command("sweep")
@click.argument("target", metavar="SWEEP_OR_SPEC", required=False)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="PATH=KIND:ARGS",
    help="Search a field without a sweep file: log_uniform:LOW,HIGH, uniform:LOW,HIGH[,step=S], int:LOW,HIGH[,step=S][,log=true] "
    "or choice:A,B,... e.g. optimizer.learning_rate=log_uniform:1e-4,1e-1.",
)
@overrides
@click.option("--trials", type=click.IntRange(min=1), help="Completed + pruned trials to run (overrides the sweep file's `trials`).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Trials at a time on this machine, each in its own process.")
@click.option("--out", type=click.Path(file_okay=False), help="Sweep directory (must be new or empty). Default: sweeps/<name>/<N>.")
@click.option("--sweeps", "root", default="sweeps", show_default=True, type=click.Path(file_okay=False), help="Where numbered sweep directories go.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), metavar="SWEEP_DIR", help="Continue SWEEP_DIR's sweep to its count of trials.")
@click.option("--storage", metavar="URL", help="The study's storage: an RDB URL (postgresql://USER@HOST/DB, mysql://...) or journal:PATH. Default: SQLite in the sweep directory.")
@click.option("--study", metavar="NAME", help="The study's name in --storage (default: the sweep's name); machines that run the same sweep on one study share its trials.")
@click.option("--device", help="auto, cpu, cuda or cuda:N for every trial (default: the spec's train.device).")
@as_json
@click.option("--quiet", is_flag=True, help="No line per trial.")
@click.option("--worker", type=int, hidden=True)
def command(target, params, overrides, trials, workers, out, root, resume_dir, storage, study, device, as_json, quiet, worker) -> None:
    """Search hyperparameters of a spec with Optuna. SWEEP_OR_SPEC is a sweep
    file (the spec and its search), or a spec with --param options.

    Every trial is an ordinary run directory inside the sweep directory
    (trial-NNNN: spec.yaml, checkpoints, TensorBoard events with the trial's
    hparams, metrics.jsonl, run.json naming the sweep and the trial). Bad trials
    are pruned on their validation curve. The end prints the best trial, its run
    directory, its values and the `tfn train` command that reproduces it; plots
    go to history.png and importance.png. Ctrl-C stops after the running trials
    write their checkpoints; --resume continues to the count.

    \b
    Examples:
      tfn sweep my.sweep.yaml
      tfn sweep my.yaml --param optimizer.learning_rate=log_uniform:1e-4,1e-1 --trials 20
      tfn sweep my.sweep.yaml --workers 2 --set train.epochs=3
      tfn sweep --resume sweeps/my/1
      tfn sweep my.sweep.yaml --storage postgresql://me@db-host/sweeps --study my-study   # on each machine
      tensorboard --logdir sweeps/my/1
    """
    if worker is not None:
        if not resume_dir:
            raise click.UsageError("--worker goes with --resume SWEEP_DIR")
        _work(resume_dir, worker, device, quiet)
        return
    from tfn.runners.sweep import SweepFailed, reopen, run_workers, start

    if resume_dir:
        given = [o for o, v in (("SWEEP_OR_SPEC", target), ("--param", params), ("--set", overrides), ("--out", out), ("--study", study)) if v]
        if given:
            raise click.UsageError(f"--resume continues a sweep with its own definition; drop {', '.join(given)}")
        sweeper = reopen(resume_dir, storage=storage, trials=trials)
    else:
        if target is None:
            raise click.UsageError("missing SWEEP_OR_SPEC (or --resume SWEEP_DIR)")
        from tfn.specs.sweep import load_sweep

        loaded = load_sweep(target, params=params, overrides=overrides, trials=trials)
        sweeper = start(loaded, out=out, root=root, storage=storage, study=study, command=["tfn", *sys.argv[1:]])
    if not quiet:
        click.echo(f"sweep {_shown(sweeper.sweep_dir)}: study {sweeper.study_name!r} in {sweeper.shown_storage()}", err=True)
    failure = stopped = None
    problems: list[str] = []
    try:
        try:
            if workers == 1:
                stopped = sweeper.work(device=device, quiet=quiet)
            else:
                outcome = run_workers(sweeper.sweep_dir, workers, device=device, quiet=quiet, storage=storage)
                stopped, problems = outcome.stopped, outcome.problems
                failure = sweeper.too_many_failures()
        except SweepFailed as exc:
            failure = str(exc)
        summary = sweeper.summary()
        grid_done = sweeper.grid_exhausted()
    finally:
        sweeper.close()
    if as_json:
        click.echo(json.dumps({**summary, "stopped": stopped, "problems": problems}, indent=2))
    else:
        _print(summary)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    resume = f"tfn sweep --resume {_shown(sweeper.sweep_dir)}"
    if failure:
        click.echo(f"error: {failure}", err=True)
        sys.exit(1)
    if stopped:
        click.echo(f"stopped by {stopped}: running trials wrote their checkpoints; continue with: {resume}", err=True)
        sys.exit(128 + getattr(signal, stopped))
    done = summary["trials"]["completed"] + summary["trials"]["pruned"]
    if done < summary["target"] and not grid_done:
        click.echo(f"error: {done} of {summary['target']} trials finished; continue with: {resume}", err=True)
        sys.exit(1)


def _work(resume_dir, worker: int, device, quiet) -> None:
    """One worker process of `--workers N`: trials until the count, no summary."""
    from tfn.runners.sweep import reopen

    sweeper = reopen(resume_dir, worker=worker)
    try:
        stopped = sweeper.work(device=device, quiet=quiet)
    finally:
        sweeper.close()
    if stopped:
        sys.exit(128 + getattr(signal, stopped))


def _shown(path) -> str:
    """A path relative to the working directory when it lies below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _print(summary: dict) -> None:
    t = summary["trials"]
    counts = f"{t['completed']} completed, {t['pruned']} pruned, {t['failed']} failed" + (f", {t['running']} running" if t["running"] else "")
    click.echo(f"sweep {_shown(summary['sweep_dir'])}: {t['completed'] + t['pruned']} of {summary['target']} trials ({counts})")
    best = summary["best"]
    if best is None:
        click.echo("no completed trial yet")
    else:
        click.echo(f"best: trial {best['trial']}, validation {summary['monitor']} {best['value']:.4f}")
        where = _shown(best["run_dir"]) if best.get("run_dir") else "?"
        click.echo(f"  run: {where}" + (f" (on {best['host']})" if best.get("host") and best["host"] != socket.gethostname() else ""))
        for name, value in best["params"].items():
            click.echo(f"  {name}: {value:.6g}" if isinstance(value, float) else f"  {name}: {value}")
        click.echo(f"  reproduce: {best['command']}")
    plots = [_shown(v) for k, v in summary["plots"].items() if not k.endswith("note")]
    if plots:
        click.echo(f"plots: {', '.join(plots)}")
    for key, note in summary["plots"].items():
        if key.endswith("note"):
            click.echo(note)
