"""Figures of a training run, written to files (no display needed)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_loss_curve", "pyplot", "save_figure"]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir, name: str):
    """Saves ``fig`` as ``out_dir/name`` (110 dpi) and closes it; returns the path."""
    fig.tight_layout()
    path = Path(out_dir) / name
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def plot_loss_curve(log_history: list[dict], out_dir, title: str = "training"):
    """Plots the training and evaluation loss of ``trainer.state.log_history`` against the step into
    ``out_dir/loss_curve.png``; returns its path (None if no loss was logged)."""
    curves = {label: [(h["step"], h[key]) for h in log_history if key in h and "step" in h]
              for key, label in (("loss", "train loss"), ("eval_loss", "validation loss"))}
    if not any(curves.values()):
        return None
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for label, points in curves.items():
        if points:
            ax.plot(*zip(*points), label=label, marker="o" if label.startswith("validation") else None)
    ax.set(xlabel="step", ylabel="loss (nats)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out_dir, "loss_curve.png")
