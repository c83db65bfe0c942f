"""Drawing attention maps needs matplotlib, an optional extra: one place that imports it."""
from __future__ import annotations

from pathlib import Path

from seqtasks.errors import UserError


def pyplot(path: str | Path):
    """matplotlib.pyplot with the file-only Agg backend, or a clear error naming the extra to install."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise UserError("drawing attention needs matplotlib, which is not installed", str(path),
                        "pip install seqtasks[plot]  (or pip install matplotlib)") from None
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
