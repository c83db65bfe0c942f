"""Small datasets bundled with seqtasks (installed as seqtasks.data); see README.md here."""
from __future__ import annotations

from pathlib import Path


def bundled_path(name: str) -> Path:
    """The path of a bundled data file, in a checkout or an installed package alike."""
    return Path(__file__).resolve().parent / name
