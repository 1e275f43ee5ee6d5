"""`tfn sweep` across processes: two workers share one study; kill -9 of a worker fails its trial by
Optuna's heartbeat while the other completes the count; Ctrl-C and kill -9 then --resume lose and
duplicate nothing; two `tfn sweep` commands against one PostgreSQL study (as two machines would)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SWEEP = """
version: 1
sweep: tiny.yaml
monitor: accuracy
trials: {trials}
heartbeat: 1                      # a silent trial is failed after 2 s
sampler: {{type: random, seed: 0}}
pruner: none
params:
  optimizer.learning_rate: {{log_uniform: [0.05, 0.5]}}
"""
LOST = "its worker stopped while it ran (killed, or its machine lost); no result"
EPOCHS = 4  # of 19 steps: a checkpoint at each epoch's end leaves three epochs to signal a trial in
LAST_STEP = EPOCHS * 19


@pytest.fixture
def folder(tmp_path, tiny_conv_spec):
    tiny_conv_spec.write_text(tiny_conv_spec.read_text().replace("epochs: 2,", f"epochs: {EPOCHS},"))
    assert f"epochs: {EPOCHS}," in tiny_conv_spec.read_text()

    def sweep_file(trials: int) -> str:
        (tmp_path / "s.sweep.yaml").write_text(textwrap.dedent(SWEEP.format(trials=trials)).lstrip())
        return "s.sweep.yaml"

    return tmp_path, sweep_file


def tfn(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tfn.cli.main", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def runs(sweep_dir: Path) -> dict[int, dict]:
    found = {}
    for path in sorted(sweep_dir.glob("trial-*/run.json")):
        run = json.loads(path.read_text())
        assert path.parent.name == f"trial-{run['sweep']['trial']:04d}"
        found[run["sweep"]["trial"]] = run
    return found


def signal_mid_trial(sweep_dir: Path, proc: subprocess.Popen, signum: int, timeout: float = 240) -> dict:
    """Send `signum` to the worker of a trial that has written a checkpoint before its last step; its run.json.

    The worker is paused (SIGSTOP) while its trial is checked, so the signal
    lands mid-training however fast the machine is: a trial whose last
    checkpoint is written has finished training even while run.json still
    says running, and a Ctrl-C then rightly lets it complete.
    """

    def mid_training(number: int) -> bool:
        steps = [int(path.name[len("ckpt-"):len("ckpt-") + 6]) for path in (sweep_dir / f"trial-{number:04d}" / "checkpoints").glob("ckpt-??????.safetensors")]
        return bool(steps) and max(steps) < LAST_STEP and runs(sweep_dir)[number]["status"] == "running"

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, finish(proc)
        for number, run in runs(sweep_dir).items():
            if run.get("status") != "running" or not mid_training(number):
                continue
            pid = run["sweep"]["pid"]
            os.kill(pid, signal.SIGSTOP)
            still = mid_training(number)
            if still:
                os.kill(pid, signum)
            os.kill(pid, signal.SIGCONT)
            if still:
                return run
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no trial reached its first checkpoint in {timeout} s: {finish(proc)}")


def study(sweep_dir: Path, name: str, storage: str | None = None):
    import optuna

    rdb = optuna.storages.RDBStorage(storage or f"sqlite:///{sweep_dir / 'study.db'}")
    try:
        return optuna.load_study(study_name=name, storage=rdb).get_trials()
    finally:
        rdb.engine.dispose()


def test_two_workers_and_a_killed_one(folder):
    root, sweep_file = folder
    proc = tfn("sweep", sweep_file("4"), "--workers", "2", "--out", "sw", cwd=root)
    sweep_dir = (root / "sw").resolve()
    victim = signal_mid_trial(sweep_dir, proc, signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, err
    assert "killed by SIGKILL" in err and f"(pid {victim['sweep']['pid']})" in err
    trials = study(sweep_dir, "tiny")
    killed = trials[victim["sweep"]["trial"]]
    assert killed.state.name == "FAIL" and "error" not in killed.user_attrs  # failed by the heartbeat, from the other worker
    assert [t.state.name for t in trials].count("COMPLETE") == 4 and len(trials) == 5
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers ran trials
    by_number = runs(sweep_dir)
    assert sorted(by_number) == [t.number for t in trials]  # one run directory per trial: disjoint
    assert by_number[killed.number]["status"] == "failed" and by_number[killed.number]["error"] == LOST
    assert all(by_number[t.number]["status"] == "completed" for t in trials if t.state.name == "COMPLETE")
    assert "4 of 4 trials (4 completed, 0 pruned, 1 failed)" in out


def test_ctrl_c_then_kill_then_resume(folder):
    root, sweep_file = folder
    proc = tfn("sweep", sweep_file("3"), "--out", "sw", cwd=root)
    sweep_dir = (root / "sw").resolve()
    first = signal_mid_trial(sweep_dir, proc, signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 128 + signal.SIGINT, err
    assert "stopped by SIGINT: running trials wrote their checkpoints; continue with: tfn sweep --resume sw" in err
    interrupted = runs(sweep_dir)[first["sweep"]["trial"]]
    assert interrupted["status"] == "interrupted" and interrupted["stopped"] == "SIGINT"
    state = json.loads((sweep_dir / f"trial-{first['sweep']['trial']:04d}" / "checkpoints" / "checkpoint.json").read_text())
    assert state["latest"] == f"ckpt-{interrupted['steps']:06d}.safetensors"  # a checkpoint at the step it stopped

    proc = tfn("sweep", "--resume", "sw", cwd=root)
    second = signal_mid_trial(sweep_dir, proc, signal.SIGKILL)  # kill -9 of the single process
    proc.communicate()

    code, out, err = finish(tfn("sweep", "--resume", "sw", "--json", cwd=root))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["trials"] == {"completed": 3, "pruned": 0, "failed": 1, "running": 0, "stopped": 1}
    trials = study(sweep_dir, "tiny")
    assert [t.number for t in trials] == list(range(5))
    assert trials[first["sweep"]["trial"]].user_attrs["stopped"] == "SIGINT"
    assert trials[second["sweep"]["trial"]].state.name == "FAIL" and summary["failures"] == {str(second["sweep"]["trial"]): LOST}
    by_number = runs(sweep_dir)
    assert sorted(by_number) == list(range(5)) and by_number[second["sweep"]["trial"]]["status"] == "failed"
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(completed) == 3 and all(by_number[t.number]["status"] == "completed" for t in completed)
    # a resumed sampler draws new values: no trial repeats another's
    assert len({t.params["optimizer.learning_rate"] for t in trials}) == 5


# --- PostgreSQL ---------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    for name in ("pg_ctl", "initdb", "postgres"):
        found = shutil.which(name)
        if found and all((Path(found).resolve().parent / n).exists() for n in ("pg_ctl", "initdb")):
            return Path(found).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    return None


@pytest.fixture
def postgres():
    """A PostgreSQL server on 127.0.0.1 and a free port, run by an unprivileged user; its URL; stopped after."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (pg_ctl, initdb) on PATH or in /usr/lib/postgresql/*/bin; .ci/run installs them")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'tfn[postgres]'")
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    data = Path(tempfile.mkdtemp(prefix="tfn-pg-"))
    if user is not None:
        os.chown(data, user.pw_uid, user.pw_gid)
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "cwd": data} if user else {"cwd": data}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data / "db")]
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "tfn", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True, **as_user)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
        subprocess.run([*pg_ctl, "-o", options, "-l", str(data / "log"), "-w", "-t", "60", "start"], check=True, capture_output=True, **as_user)
        import psycopg

        with psycopg.connect(f"postgresql://tfn@127.0.0.1:{port}/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE sweeps")
        yield f"postgresql://tfn@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, **as_user)
        shutil.rmtree(data, ignore_errors=True)


def test_two_machines_on_one_postgresql_study(folder, postgres):
    root, sweep_file = folder
    name = sweep_file("4")
    machines = [tfn("sweep", name, "--storage", postgres, "--study", "shared", "--out", out, cwd=root) for out in ("a", "b")]
    results = [finish(p) for p in machines]
    for code, out, err in results:
        assert code == 0, err
    trials = study(root, "shared", storage=postgres)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4  # the count is the study's, not each machine's
    assert all(t.state.name == "COMPLETE" or "skipped" in t.user_attrs for t in trials)
    ran = {out: runs((root / out).resolve()) for out in ("a", "b")}
    assert ran["a"] and ran["b"]  # both machines ran trials
    assert not set(ran["a"]) & set(ran["b"])  # none twice
    assert sorted([*ran["a"], *ran["b"]]) == [t.number for t in complete]
    assert {run["sweep"]["pid"] for runs_ in ran.values() for run in runs_.values()} == {p.pid for p in machines}
    assert all(run["sweep"]["storage"] == postgres for runs_ in ran.values() for run in runs_.values())
    summaries = [json.loads((root / out / "summary.json").read_text()) for out in ("a", "b")]
    assert summaries[0]["best"]["trial"] == summaries[1]["best"]["trial"]
