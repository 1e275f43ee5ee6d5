"""`tfn inspect-checkpoint`: listing, values, statistics, diff, against, and hostile files."""

from __future__ import annotations

import json
import math
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safetensors.numpy import save as safetensors_bytes

META = {"format": "tfn.checkpoint", "step": "10", "epoch": "1", "graph_hash": "abc"}


@pytest.fixture
def ckpt(tmp_path):
    """A checkpoint written with safetensors' NumPy writer (independent of tfn's writer)."""
    tensors = {
        "dense/kernel": np.arange(12, dtype=np.float32).reshape(3, 4) / 4 - 1,
        "dense/bias": np.array([1.0, np.nan, -np.inf, 3.0], dtype=np.float32),
        "big": np.linspace(-1, 1, 1000, dtype=np.float32),
    }
    path = tmp_path / "a.safetensors"
    path.write_bytes(safetensors_bytes(tensors, META))
    return path, tensors


def test_listing_names_dtype_shape_size_and_totals(ckpt, tfn_cli):
    path, _ = ckpt
    code, out, err = tfn_cli("inspect-checkpoint", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert any(l.split()[:4] == ["big", "F32", "[1000]", "1,000"] for l in lines)
    assert any(l.split()[:5] == ["dense/kernel", "F32", "[3,", "4]", "12"] for l in lines)
    assert "step 10" in out and "graph_hash abc" in out
    assert lines[-1] == "# 3 variables, 1,016 values, 4,064 bytes"


def test_listing_json(ckpt, tfn_cli):
    path, _ = ckpt
    code, out, _ = tfn_cli("inspect-checkpoint", str(path), "--json")
    data = json.loads(out)
    assert code == 0
    assert {v["name"]: (v["dtype"], v["shape"], v["size"]) for v in data["variables"]} == {
        "big": ("F32", [1000], 1000),
        "dense/bias": ("F32", [4], 4),
        "dense/kernel": ("F32", [3, 4], 12),
    }
    assert data["metadata"] == META and data["total_size"] == 1016


def test_stats_match_numpy_over_finite_values(ckpt, tfn_cli):
    path, tensors = ckpt
    code, out, _ = tfn_cli("inspect-checkpoint", str(path), "--stats", "--json")
    assert code == 0
    stats = {v["name"]: v["stats"] for v in json.loads(out)["variables"]}
    kernel = tensors["dense/kernel"].astype(np.float64)
    assert stats["dense/kernel"] == pytest.approx(
        {"min": -1.0, "max": 1.75, "mean": kernel.mean(), "std": kernel.std(), "l2_norm": math.sqrt((kernel**2).sum()), "nan": 0, "inf": 0}
    )
    # [1, nan, -inf, 3]: statistics of the finite 1 and 3; one NaN, one Inf counted
    assert stats["dense/bias"] == pytest.approx({"min": 1.0, "max": 3.0, "mean": 2.0, "std": 1.0, "l2_norm": math.sqrt(10), "nan": 1, "inf": 1})
    code, table, _ = tfn_cli("inspect-checkpoint", str(path), "--stats")
    assert "L2 norm" in table and "NaN" in table


def test_tensor_values_summarised_unless_full(ckpt, tfn_cli):
    path, _ = ckpt
    code, out, _ = tfn_cli("inspect-checkpoint", str(path), "--tensor", "dense/kernel")
    assert code == 0
    assert out.splitlines()[0] == "dense/kernel float32 [3, 4]"
    assert "[-1.   -0.75 -0.5  -0.25]" in out
    code, out, _ = tfn_cli("inspect-checkpoint", str(path), "--tensor", "big")
    assert "..." in out and len(out) < 2000
    code, out, _ = tfn_cli("inspect-checkpoint", str(path), "--tensor", "big", "--full")
    assert "..." not in out
    printed = np.array(out.split("\n", 1)[1].replace("[", " ").replace("]", " ").split(), dtype=np.float64)
    np.testing.assert_allclose(printed, np.linspace(-1, 1, 1000), atol=1e-6)  # every value, in order
    code, out, _ = tfn_cli("inspect-checkpoint", str(path), "--all-tensors")
    assert all(f"{name} float32" in out for name in ("big", "dense/bias", "dense/kernel"))


def test_unknown_tensor_suggests(ckpt, tfn_cli):
    path, _ = ckpt
    code, _, err = tfn_cli("inspect-checkpoint", str(path), "--tensor", "dense/kernal")
    assert code == 2
    assert "no variable 'dense/kernal' in this checkpoint (did you mean 'dense/kernel'?)" in err


def test_diff_added_removed_reshaped_changed(ckpt, tmp_path, tfn_cli):
    path, tensors = ckpt
    changed = tensors["dense/kernel"].copy()
    changed[1, 2] += 0.5
    other = {"dense/kernel": changed, "dense/bias": np.zeros(5, np.float32), "new": np.ones(2, np.float32)}
    (tmp_path / "b.safetensors").write_bytes(safetensors_bytes(other, META))
    code, out, _ = tfn_cli("inspect-checkpoint", str(path), "--diff", str(tmp_path / "b.safetensors"), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["added"] == {"new": {"dtype": "F32", "shape": [2]}}
    assert d["removed"] == {"big": {"dtype": "F32", "shape": [1000]}}
    assert d["reshaped"] == [{"name": "dense/bias", "this": {"dtype": "F32", "shape": [4]}, "other": {"dtype": "F32", "shape": [5]}}]
    (change,) = d["changed"]
    kernel = tensors["dense/kernel"].astype(np.float64)
    assert change["name"] == "dense/kernel"
    assert change["max_abs"] == pytest.approx(0.5)
    assert change["relative_l2"] == pytest.approx(0.5 / math.sqrt((kernel**2).sum()))
    assert not d["identical"]
    code, text, _ = tfn_cli("inspect-checkpoint", str(path), "--diff", str(tmp_path / "b.safetensors"))
    assert "+ new" in text and "- big" in text and "~ dense/bias  F32 [4] -> F32 [5]" in text
    assert text.splitlines()[-1] == "# 1 added, 1 removed, 1 reshaped, 1 changed, 0 unchanged"
    code, same, _ = tfn_cli("inspect-checkpoint", str(path), "--diff", str(path), "--json")
    assert json.loads(same)["identical"] and sorted(json.loads(same)["unchanged"]) == ["big", "dense/bias", "dense/kernel"]


def test_against_a_spec_lists_missing_extra_and_mismatched(minimal_spec, tmp_path, tfn_cli):
    from tfn.specs import load_graph

    graph = load_graph(minimal_spec)
    shapes = {v.name: v.shape for v in graph.variables}
    tensors = {name: np.zeros(shape, np.float32) for name, shape in shapes.items() if name != "conv/bias"}
    tensors["logits/kernel"] = np.zeros((10, 3), np.float32)
    tensors["stray"] = np.zeros(3, np.float32)
    path = tmp_path / "c.safetensors"
    path.write_bytes(safetensors_bytes(tensors, {"format": "tfn.checkpoint", "graph_hash": "other"}))
    code, out, _ = tfn_cli("inspect-checkpoint", str(path), "--against", str(minimal_spec), "--json")
    assert code == 0
    fit = json.loads(out)
    assert fit["missing"] == {"conv/bias": {"dtype": "F32", "shape": [4]}}
    assert fit["extra"] == {"stray": {"dtype": "F32", "shape": [3]}}
    assert fit["mismatched"] == [{"name": "logits/kernel", "checkpoint": {"dtype": "F32", "shape": [10, 3]}, "graph": {"dtype": "F32", "shape": [10, 256]}}]
    assert not fit["fits"] and not fit["same_graph"] and fit["matching"] == len(shapes) - 2
    code, text, _ = tfn_cli("inspect-checkpoint", str(path), "--against", str(minimal_spec))
    assert "missing from checkpoint: conv/bias  F32 [4]" in text and "not in graph: stray  F32 [3]" in text
    assert "differs: logits/kernel  checkpoint F32 [10, 3], graph F32 [10, 256]" in text


def test_listing_reads_only_the_header_and_no_torch(tmp_path):
    """A 4 GiB sparse checkpoint lists while reading a few bytes and keeping memory small."""
    path = tmp_path / "huge.safetensors"
    n = 2**30  # float32: 4 GiB of tensor data, none of it on disk
    header = json.dumps({"__metadata__": {"format": "tfn.checkpoint"}, "huge": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 4 * n)
    code = textwrap.dedent(
        f"""
        import resource, sys
        from tfn.runners.inspect import list_variables
        def read_chars():
            return int(next(l for l in open("/proc/self/io") if l.startswith("rchar")).split()[1])
        list_variables({str(path)!r}, stats=False)  # warm: imports done, so what follows is the listing alone
        before, rss = read_chars(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        listing = list_variables({str(path)!r})
        print(read_chars() - before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss, listing.total_size, "torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    read, rss_kib, total, torch_loaded = int(out[0]), int(out[1]), int(out[2]), out[3]
    assert total == n
    assert read < 64 * 1024  # the header is a few hundred bytes; the data is 4 GiB
    assert rss_kib < 64 * 1024
    assert torch_loaded == "False"


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


def _valid(tensors=None) -> bytes:
    return safetensors_bytes(tensors or {"w": np.zeros(100, np.float32)}, META)


def _with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("truncated", _valid()[:200], "truncated"),
        ("header_cut", _valid()[:20], "truncated: the header announces"),
        ("tiny", b"\x01\x02", "truncated: 2 bytes"),
        ("png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "this is a PNG image, not a safetensors checkpoint"),
        ("hdf5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "this is an HDF5 file"),
        ("text", b"just some text, not a checkpoint at all", "not a safetensors checkpoint"),
        ("npy", b"\x93NUMPY\x01\x00" + b"\0" * 64, "this is a NumPy .npy array"),
        ("bad_json", struct.pack("<Q", 6) + b"{oops}", "not a readable safetensors checkpoint"),
        (
            "size_lie",
            _with_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
            "not a readable safetensors checkpoint",
        ),
        (
            "offset_lie",
            _with_header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [2], "data_offsets": [100, 108]}}, b"\0" * 16),
            "not a readable safetensors checkpoint",
        ),
        ("past_end", _with_header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4), "not a readable safetensors checkpoint"),
    ],
)
def test_hostile_or_broken_files_exit_2(tmp_path, tfn_cli, name, content, message):
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(content)
    for extra in ([], ["--stats"], ["--all-tensors"]):
        code, out, err = tfn_cli("inspect-checkpoint", str(path), *extra)
        assert code == 2, (name, out, err)
        assert err.startswith(f"{path}: error: ") and message in err, err
        assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickles_are_refused_and_never_run(tmp_path, tfn_cli, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(_Exploit(marker), protocol=protocol))
    code, _, err = tfn_cli("inspect-checkpoint", str(path))
    assert code == 2
    assert "pickle" in err and "safetensors" in err
    assert not marker.exists()


def test_torch_save_zip_is_refused(tmp_path, tfn_cli):
    import torch

    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(3)}, path)
    code, _, err = tfn_cli("inspect-checkpoint", str(path))
    assert code == 2
    assert "zip archive (PyTorch's torch.save format, a pickle inside)" in err


def test_missing_path_and_run_directory_without_checkpoints(tmp_path, tfn_cli):
    code, _, err = tfn_cli("inspect-checkpoint", str(tmp_path / "nope"))
    assert code == 2 and "no such checkpoint file or directory" in err
    code, _, err = tfn_cli("inspect-checkpoint", str(tmp_path))
    assert code == 2 and "no checkpoint here" in err


def test_no_inspect_command_imports_torch(ckpt, minimal_spec):
    """Listing, values, statistics, diff and against all work from safetensors' NumPy reader."""
    path, _ = ckpt
    commands = [[str(path)], [str(path), "--stats"], [str(path), "--all-tensors"], [str(path), "--diff", str(path)], [str(path), "--against", str(minimal_spec)]]
    code = textwrap.dedent(
        f"""
        import sys
        from tfn.cli.main import main
        for args in {commands!r}:
            try:
                main(["inspect-checkpoint", *args])
            except SystemExit as exit:
                assert exit.code in (0, None), (args, exit.code)
        print("torch" in sys.modules, file=sys.stderr)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip() == "False"


def test_safetensors_whose_header_length_starts_like_a_pickle_is_read(tmp_path):
    # a header of 640..1408 bytes makes the file start with b"\x80\x02".."\x80\x05", pickle's magic
    import struct

    import numpy as np
    from safetensors.numpy import save_file

    from tfn.runners.checkpoint import read_info

    for width in range(1, 1200):
        path = tmp_path / "ckpt.safetensors"
        save_file({"v" * width: np.zeros(1, np.float32)}, str(path))
        length = struct.unpack("<Q", path.read_bytes()[:8])[0]
        if 0x280 <= length < 0x300:
            break
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert list(read_info(path).variables) == ["v" * width]
