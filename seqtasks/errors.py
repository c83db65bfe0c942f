"""The one error style of seqtasks.

A user mistake (a missing file, an empty corpus, a wrong column, a folder that is not a run) raises
`UserError`. The CLI prints it as one line and exits with status 1:

    seqtasks: error: WHAT (WHERE): HOW TO FIX

Library code raises it; only the CLI decides how it is shown.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: what went wrong, where, and how to fix it."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.fix:
            text += f": {self.fix}"
        return text


class SeqtasksWarning(UserWarning):
    """Something the user should know that does not stop the work (a result that could not be saved).
    Raised with warnings.warn; the CLI shows it as one line, `seqtasks: warning: WHAT (WHERE): FIX`."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        super().__init__(UserError(what, where, fix).message)


class TrainingFailed(UserError):
    """An unexpected error inside training, after the run folder exists. The run is kept (with a
    checkpoint of the last finished step when one could be saved), so the fix names `seqtasks resume`;
    the original exception is its __cause__, which --debug shows."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers and `timeout` send) during training, handled as Ctrl-C is: the
    checkpoint is saved, then the process exits with 143 (128 + SIGTERM) where Ctrl-C exits with 130."""


def describe_exception(error: BaseException) -> str:
    """`Type: first line of the message`. TensorFlow's op errors open with "Graph execution error:" and
    the node's Python traceback; their cause is the last unindented line before the node list."""
    lines = str(error).splitlines()
    text = next((line.strip() for line in lines if line.strip()), "")
    if text == "Graph execution error:":
        causes = [line.strip() for line in lines[1:]
                  if line.strip() and not line[0].isspace() and not line.startswith(("Detected at node", "[["))]
        text = causes[-1] if causes else ""
    name = type(error).__name__
    return f"{name}: {text}" if text else name
