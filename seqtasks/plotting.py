"""Drawing needs matplotlib, an optional extra (pip install seqtasks[plot]): one place that imports it.

Attention maps (translate, caption `--plot`) and the training curves of a run (RUN/curves.png).
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Sequence

from seqtasks.errors import UserError

INSTALL_HINT = "pip install seqtasks[plot]  (or pip install matplotlib)"


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def pyplot(path: str | Path, what: str = "drawing attention"):
    """matplotlib.pyplot with the file-only Agg backend, or a clear error naming the extra to install."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise UserError(f"{what} needs matplotlib, which is not installed", str(path), INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure to a PNG and close it; an unwritable path is a UserError."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        figure.savefig(path, dpi=dpi)
    except OSError as error:
        raise UserError(f"cannot write the plot ({error.strerror or error})", str(path),
                        "choose a writable path ending in .png") from None
    finally:
        plt.close(figure)
    return path


def curve_panels(history: Sequence[dict[str, Any]], monitor: str) -> dict[str, list[str]]:
    """{panel title: the history columns drawn in it}: the losses, the validation metrics (the monitored
    one first), the learning rate and the global gradient norm; a panel whose columns no row has is left out."""
    columns = {key for row in history for key in row}
    metrics = sorted(key for key in columns if key.startswith("val_") and key != "val_loss")
    if monitor in metrics:
        metrics.remove(monitor)
        metrics.insert(0, monitor)
    panels = {"loss": [key for key in ("loss", "val_loss") if key in columns], "validation": metrics,
              "learning rate": [key for key in ("lr",) if key in columns],
              "gradient norm before clipping": [key for key in ("grad_norm", "grad_norm_max") if key in columns]}
    return {title: keys for title, keys in panels.items() if keys}


def draw_training_curves(history: Sequence[dict[str, Any]], path: str | Path, monitor: str = "val_loss") -> Path:
    """The loss (training and validation), the validation metrics and the learning rate per epoch,
    one panel each, to a PNG. history: the rows of RUN/history.csv (epoch, lr, loss, val_*, ...)."""
    plt = pyplot(path, "drawing the training curves")
    panels = curve_panels(history, monitor)
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.4), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels.items()):
        for key in keys:
            points = [(row["epoch"], row[key]) for row in history
                      if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
            if points:
                epochs, values = zip(*points)
                axis.plot(epochs, values, marker="o" if len(points) < 30 else None, markersize=3, label=key)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        if title == "learning rate":
            axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        else:
            axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    # fixed margins: tight_layout would measure every tick label, most of the time of a small plot
    figure.subplots_adjust(left=0.07 if len(panels) > 2 else 0.1, right=0.98, bottom=0.15, top=0.9, wspace=0.28)
    return save(figure, path)
