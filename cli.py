"""Run seqtasks from a source checkout: `python cli.py train lm`.

The click application lives in seqtasks/cli.py, so that installing the package gives the `seqtasks`
command without putting a generic top-level `cli` module into site-packages. Run as a script, this
file's folder (the checkout) is the first entry of sys.path, so `seqtasks` is the checkout's package;
seqtasks/tasks and seqtasks/data are symbolic links to the top-level tasks/ and data/.
"""
from seqtasks.cli import main

if __name__ == "__main__":
    main()
