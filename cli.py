"""Run seqtasks from a source checkout: `python cli.py train lm`.

The click application lives in seqtasks/cli.py, so that installing the package gives the `seqtasks`
command without putting a generic top-level `cli` module into site-packages.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seqtasks.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
