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
