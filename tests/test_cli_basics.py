import subprocess
import sys


def test_help_does_not_import_torch():
    code = "import sys; from tfn.cli.main import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_check_help_and_schema_do_not_import_torch():
    for args in (["check", "--help"], ["schema"], ["sweep", "--help"]):
        code = f"import sys; from tfn.cli.main import main\ntry:\n main({args!r})\nexcept SystemExit: pass\nprint('torch' in sys.modules or 'optuna' in sys.modules, file=sys.stderr)"
        err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
        assert err.strip().endswith("False"), args


def test_check_prints_every_node(tfn_cli):
    code, out, err = tfn_cli("check", "digits_cnn")
    assert code == 0, err
    for name in ("conv1", "bn1", "conv2", "pool", "fc1", "logits", "loss"):
        assert f"\n{name} " in out
    # parameters computed by hand: conv1 1*32*9+32, bn 4*32, conv2 32*64*9+64, fc1 1024*128+128, logits 128*10+10
    assert "parameters: 151,434 (151,370 trainable, 64 non-trainable)" in out


def test_unknown_command_suggests(tfn_cli):
    code, out, err = tfn_cli("chek", "digits_cnn")
    assert code == 2
    assert "did you mean 'check'" in err


def test_typo_in_spec_gives_positioned_error_and_exit_2(tmp_path):
    from tfn.specs import EXAMPLES

    text = (EXAMPLES / "digits_cnn.yaml").read_text().replace("kernel_size: 3, padding: SAME}", "kernal_size: 3, padding: SAME}", 1)
    spec = tmp_path / "typo.yaml"
    spec.write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "kernal_size" in l)
    col = text.splitlines()[line - 1].index("kernal_size") + 1
    result = subprocess.run([sys.executable, "-m", "tfn.cli.main", "check", str(spec)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{spec}:{line}:{col}: error: model.layers[0].kernal_size: unknown attribute 'kernal_size' (did you mean 'kernel_size'?)" in result.stderr


def test_a_failed_data_loader_exits_1_with_its_error(tfn_cli, monkeypatch):
    import tfn.runners.train
    from tfn.runners.data import DataLoaderFailed

    def failing(*args, **kwargs):
        raise DataLoaderFailed("the data loader failed: DataLoader worker (pid 42) exited unexpectedly")

    monkeypatch.setattr(tfn.runners.train, "train", failing)
    code, out, err = tfn_cli("train", "digits_cnn", "--quiet")
    assert code == 1
    assert "error: the data loader failed: DataLoader worker (pid 42) exited unexpectedly" in err
    assert "internal error" not in err and "Traceback" not in err


def test_help_of_the_run_comparing_commands_imports_neither_torch_nor_matplotlib():
    code = (
        "import sys\nfrom tfn.cli.main import main\n"
        "for command in ('runs', 'diff', 'plot'):\n"
        " try:\n  main([command, '--help'])\n except SystemExit: pass\n"
        "print('torch' in sys.modules, 'matplotlib' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.split() == ["False", "False"]
    assert all(f"Usage: tfn {command}" in result.stdout for command in ("runs", "diff", "plot"))
