"""Runs side by side: `tfn runs` (a table of run directories), `tfn diff` (two runs or specs), `tfn plot` (curves).

Reads run directories (run.json, spec.yaml, metrics.jsonl) without importing
torch, so listing a thousand runs takes a moment, not a torch start-up.
"""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """4.2 s, 3 min 07 s, 2 h 05 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
