"""Size against quality: the chart of a plan's candidates, as a PNG and in the terminal."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeward.errors import ConfigError

__all__ = ["ChartPoint", "render_png", "render_text"]


@dataclass(frozen=True)
class ChartPoint:
    """One candidate: its label, size, mean KLD, whether it fits, whether it was chosen."""

    label: str
    size_bytes: int
    kld_mean: float
    fits: bool
    chosen: bool = False


def render_png(points: Sequence[ChartPoint], path: Path, *, title: str) -> Path:
    """Draw size (MiB) against mean KLD (log scale) to a PNG file.

    Raises:
        ConfigError: matplotlib is missing (it comes with ``edgeward[compress]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigError("drawing the chart needs matplotlib: pip install 'edgeward[compress]'"
                          ) from e
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for fits, marker, name in ((True, "o", "fits"), (False, "x", "does not fit")):
        pts = [p for p in points if p.fits == fits]
        if pts:
            ax.scatter([p.size_bytes / 2**20 for p in pts], [max(p.kld_mean, 1e-6) for p in pts],
                       marker=marker, label=name, color="tab:blue" if fits else "tab:red")
    for p in points:
        ax.annotate(p.label + (" (chosen)" if p.chosen else ""),
                    (p.size_bytes / 2**20, max(p.kld_mean, 1e-6)), textcoords="offset points",
                    xytext=(4, 4), fontsize=8, fontweight="bold" if p.chosen else "normal")
    ax.set_yscale("log")
    ax.set_xlabel("artifact size (MiB)")
    ax.set_ylabel("mean KL divergence vs reference (log)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def render_text(points: Sequence[ChartPoint], *, width: int = 60, height: int = 14) -> str:
    """The same chart as plain text: size on x, log mean KLD on y; ``*`` chosen, ``o`` fits,
    ``x`` does not fit. Readable without colour."""
    if not points:
        return "(no measured candidates)"
    xs = [p.size_bytes / 2**20 for p in points]
    ys = [math.log10(max(p.kld_mean, 1e-6)) for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]
    labels = []
    for p, x, y in zip(points, xs, ys, strict=True):
        col = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (width - 1))
        row = 0 if y1 == y0 else round((y1 - y) / (y1 - y0) * (height - 1))
        mark = "*" if p.chosen else ("o" if p.fits else "x")
        grid[row][col] = mark
        labels.append(f"{mark} {p.label}: {x:.1f} MiB, KLD {p.kld_mean:.4f}")
    lines = [f"mean KLD (log) {10 ** y1:.3g}"]
    lines += ["|" + "".join(r) for r in grid]
    lines.append(f"{10 ** y0:.3g} +" + "-" * (width - 1))
    lines.append(f"  {x0:.1f} MiB{' ' * max(1, width - 20)}{x1:.1f} MiB")
    return "\n".join([*lines, "", *labels])
