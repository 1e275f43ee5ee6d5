"""`tfn plot`: loss and metric curves of several runs in one picture, from their metrics.jsonl.

matplotlib is imported here only, when a picture is drawn (the `plot` extra);
nothing else in tfn needs it.
"""

from __future__ import annotations

import io
from pathlib import Path

from tfn.runners.files import atomic_write
from tfn.runners.runs import find_runs, records
from tfn.specs.errors import UserError

FORMATS = (".png", ".svg", ".pdf")
SPLITS = ("train", "validation", "test")


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def plot_runs(targets: list[str], output: str | Path, metrics: list[str] = ("loss",)) -> Path:
    """Draw one panel per metric, a colour per run: training (thin), validation (line and dots), test (star)."""
    output = Path(output)
    if output.suffix.lower() not in FORMATS:
        raise UserError(f"{output}: error: the picture's format comes from its suffix: {', '.join(FORMATS)}")
    # a directory of runs (runs/NAME, a sweep) stands for each run in it
    runs = [str(path) for target in targets for path in find_runs(target)]
    curves = {label: {split: records(Path(label), split) for split in SPLITS} for label in runs}
    logged = sorted({k for by_split in curves.values() for rows in by_split.values() for r in rows for k, v in r.items() if _plottable(k, v)})
    for metric in metrics:
        if metric not in logged:
            from tfn.layers import suggest

            hint = suggest(metric, logged)
            raise UserError(
                f"--metric {metric}: error: no run logged {metric!r}" + (f" (did you mean {hint!r}?)" if hint else "") + f"; they logged {', '.join(logged) or 'nothing'}"
            )
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("tfn plot draws with matplotlib, which is not installed: pip install matplotlib (or tfn's extra: pip install -e '.[plot]')") from None

    figure = Figure(figsize=(9, 3.4 * len(metrics)), layout="constrained")
    axes = figure.subplots(len(metrics), 1, squeeze=False)[:, 0]
    # fixed colours (matplotlib's default cycle), not "C0": a style set elsewhere in the process would change them
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(runs))]
    for ax, metric in zip(axes, metrics):
        for label, colour in zip(runs, colours):
            by_split = curves[label]
            train = _points(by_split["train"], metric)
            validation = _points(by_split["validation"], metric)
            test = _points(by_split["test"], metric)
            if train:
                ax.plot(*zip(*train), color=colour, linewidth=0.8, alpha=0.45, label=f"{label} train")
            if validation:
                ax.plot(*zip(*validation), color=colour, linewidth=1.8, marker="o", markersize=3, label=f"{label} validation")
            if test:
                ax.plot(*zip(*test), color=colour, linestyle="none", marker="*", markersize=11, label=f"{label} test")
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=output.suffix.lower()[1:], dpi=120)
    atomic_write(output, buffer.getvalue())
    return output


def _plottable(key: str, value) -> bool:
    return key not in ("step", "epoch", "split") and isinstance(value, (int, float)) and not isinstance(value, bool)


def _points(rows: list[dict], metric: str) -> list[tuple[int, float]]:
    return [(r["step"], r[metric]) for r in rows if _plottable(metric, r.get(metric)) and "step" in r]
