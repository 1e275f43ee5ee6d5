"""A real TensorBoard server, started by the test on loopback, asked through its HTTP data API what a
run shows: the scalar tags (no `hparams/*` group), the HParams metrics (the validation/ and test/
scalars, with the run's final values), TF op names in the graph, the confusion-matrix images.

Where headless Chromium is installed, the Scalars page is also screenshotted (to $TFN_SCREENSHOT when
set, for a person to look at); CI does not need it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

SPEC = {
    "version": 1,
    "name": "tiny",
    "model": {
        "inputs": {"x": {"shape": [4]}},
        "layers": [{"name": "hidden", "op": "dense", "units": 8}, {"op": "relu"}, {"name": "logits", "op": "dense", "units": 3}],
    },
    "loss": {"op": "sparse_softmax_cross_entropy_with_logits", "logits": "logits", "labels": "label"},
    "data": {"source": "synthetic", "classes": 3, "fields": {"x": {"shape": [4]}}, "samples": {"train": 64, "validation": 32, "test": 32}, "batch_size": 16},
    "train": {"epochs": 2, "log_every": 1, "metrics": ["accuracy", "confusion_matrix"]},
}
STARTUP_SECONDS = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, run result): TensorBoard on 127.0.0.1 over a logdir holding one tfn run."""
    import tfn.runners as tfn

    root = tmp_path_factory.mktemp("tensorboard")
    result = tfn.fit(SPEC, out=root / "runs" / "tiny" / "1", quiet=True)
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(root / "runs"), "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": str(root)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:  # up, and the run's event files loaded
            try:
                if "tiny/1/test" in get(base, "/data/runs"):
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"TensorBoard did not serve the run within {STARTUP_SECONDS} s: {process.stdout.read().decode(errors='replace')}")
            time.sleep(0.5)
        yield base, result
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def get(base: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if response.headers.get_content_type() == "application/json" else text


def test_scalars_lead_with_the_loss_and_hold_no_hparams_group(server):
    base, _ = server
    tags = get(base, "/data/plugin/scalars/tags")
    assert set(tags) == {"tiny/1/train", "tiny/1/validation", "tiny/1/test"}  # the session run holds no scalars
    assert set(tags["tiny/1/train"]) == {"loss", "accuracy", "optimizer/learning_rate", "samples_per_second"}
    assert set(tags["tiny/1/validation"]) == set(tags["tiny/1/test"]) == {"loss", "accuracy"}
    # the page sorts tag groups by name and opens the first two: loss and the metric, not hparams or the learning rate
    groups = sorted({tag.split("/")[0] for run in tags.values() for tag in run})
    assert groups == ["accuracy", "loss", "optimizer", "samples_per_second"]


def test_hparams_metrics_point_at_the_validation_and_test_scalars(server):
    base, result = server
    experiment = get(base, "/data/plugin/hparams/experiment", {"experimentName": ""})
    names = [(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]]
    assert names == [("validation", "loss"), ("validation", "accuracy"), ("test", "loss"), ("test", "accuracy")]
    assert {h["name"] for h in experiment["hparamInfos"]} == {"optimizer", "learning_rate", "schedule", "batch_size", "epochs", "seed"}
    request = {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}
    (group,) = get(base, "/data/plugin/hparams/session_groups", request | {"colParams": [], "startIndex": 0, "sliceSize": 10})["sessionGroups"]
    assert group["name"] == "tiny/1" and group["sessions"][0]["status"] == "STATUS_SUCCESS"
    assert group["hparams"]["optimizer"] == "adam" and group["hparams"]["batch_size"] == 16
    values = {(v["name"]["group"], v["name"]["tag"]): v["value"] for v in group["metricValues"]}
    # the table's values are the run's final figures (float32 in the event files)
    for split in ("validation", "test"):
        for tag in ("loss", "accuracy"):
            assert values[(split, tag)] == pytest.approx(result.metrics[split][tag], rel=1e-6)


def test_graph_shows_tensorflow_ops_and_images_hold_confusion_matrices(server):
    base, _ = server
    graph = get(base, "/data/plugin/graphs/graph?run=tiny/1/train")
    assert 'name: "hidden"\n  op: "MatMul"' in graph and 'op: "SparseSoftmaxCrossEntropyWithLogits"' in graph
    assert 's: "dense"' in graph  # tfn's op, kept as the tfn_op attribute
    images = get(base, "/data/plugin/images/tags")
    assert set(images["tiny/1/validation"]) == set(images["tiny/1/test"]) == {"confusion_matrix"}


def test_scalars_page_screenshot_where_chromium_is_installed(server, tmp_path):
    browser = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
    if browser is None:
        return  # optional: CI has no browser; the data API tests above carry the checks
    import numpy as np
    from PIL import Image

    base, _ = server
    picture = tmp_path / "scalars.png"
    subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={picture}",
         "--window-size=1400,1000", "--virtual-time-budget=20000", f"{base}/?darkMode=false#scalars"],
        capture_output=True, timeout=120, check=True, env={**os.environ, "HOME": str(tmp_path)},
    )
    image = Image.open(picture).convert("RGB")
    assert image.size == (1400, 1000)
    colours = np.unique(np.asarray(image).reshape(-1, 3), axis=0)
    assert len(colours) > 20  # a drawn page, not a blank one
    if os.environ.get("TFN_SCREENSHOT"):
        shutil.copy(picture, os.environ["TFN_SCREENSHOT"])
