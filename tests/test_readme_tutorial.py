"""The README's tutorial, run as written: its files, then each of its commands in order."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"
TITLE = "## Tutorial: from a CSV file to two compared runs"


def tutorial() -> tuple[dict[str, str], list[str]]:
    """The files the tutorial writes ({name: text}, from blocks whose first line is `# NAME`) and its shell commands."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(TITLE) :]
    section = section[: section.index("\n## ", len(TITLE))]
    files, commands = {}, []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S):
        first = body.splitlines()[0]
        if language in ("python", "yaml"):
            files[first.removeprefix("# ").strip()] = body
        else:
            commands += [line.split("  #")[0].strip() for line in body.splitlines() if line.strip()]
    return files, commands


def test_the_tutorial_runs_as_written(tmp_path, monkeypatch, tfn_cli):
    files, commands = tutorial()
    assert set(files) == {"make_flowers.py", "flowers.yaml"} and len(commands) == 8
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    outputs = {}
    for command in commands:
        args = shlex.split(command)
        if args[0] == "python":
            subprocess.run([sys.executable, *args[1:]], check=True)
            continue
        assert args[0] == "tfn", command
        code, out, err = tfn_cli(*args[1:])
        assert code == 0, f"{command}: {err}"
        outputs[command] = (out, err)
    assert (tmp_path / "flowers.csv").read_text().count("\n") == 601

    trained = [out for command, (out, _) in outputs.items() if command.startswith("tfn train")]
    assert [line.split(":")[0] for line in trained] == ["runs/flowers/1", "runs/flowers/2"]
    assert all("(weights of step " in line and "the best validation accuracy" in line for line in trained)
    test_accuracy = float(re.search(r"test loss [\d.]+, accuracy ([\d.]+)", trained[0])[1])
    assert test_accuracy > 0.85  # chance is 1/3

    listing = outputs["tfn runs runs/flowers"][0].splitlines()
    assert listing[0].split()[:5] == ["name", "N", "status", "steps", "best"] and "accuracy" in listing[0]
    assert [row.split()[:4] for row in listing[2:]] == [["flowers", "1", "completed", "240"], ["flowers", "2", "completed", "240"]]
    compared = outputs["tfn diff runs/flowers/1 runs/flowers/2"][0]
    assert compared.startswith("spec: 2 fields differ") and "model.layers.0.units" in compared and "optimizer.learning_rate" in compared
    assert "final test accuracy" in compared
    assert (tmp_path / "flowers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluated = outputs["tfn eval runs/flowers/1 --split validation"][0]
    assert evaluated.startswith(str(Path("runs/flowers/1/checkpoints"))) and "on validation:" in evaluated and "f1" in evaluated
