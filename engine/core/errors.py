"""One exception family for every bad input the engine can meet.

Each error message names the offending path or value and says what to do. When one shell command repairs the
problem, it travels separately as ``fix``: ``str(err)`` ends with "; <fix_prefix>: <fix>" (what the CLI prints),
while :attr:`EquiLabError.reason` is the message alone, for the app, which shows ``fix`` in its own code box.
"""

from __future__ import annotations


class EquiLabError(Exception):
    """Base class: a clear, user-facing error (bad input, missing file, bad config).

    ``fix``: the exact shell command that repairs the problem, or None when there is none.
    """

    fix_prefix = "fix it with"  # how str() introduces the command

    def __init__(self, *args: object, fix: str | None = None) -> None:
        super().__init__(*args)
        self.fix = fix

    @property
    def reason(self) -> str:
        """The message without the fixing command."""
        return super().__str__()

    def __str__(self) -> str:
        return f"{self.reason}; {self.fix_prefix}: {self.fix}" if self.fix else self.reason


class DataError(EquiLabError):
    """A dataset cannot be found, read or decoded."""


class ConfigError(EquiLabError):
    """A configuration key or value is unknown or out of range."""


class CheckpointError(EquiLabError):
    """A checkpoint is missing, damaged, unsafe or does not match the architecture."""


class StoreError(EquiLabError):
    """An embedding store is missing, damaged, or was built from something else."""

    fix_prefix = "rebuild it with"


class WriteError(EquiLabError):
    """A file or directory cannot be written: disk full, file too large, read-only or permission denied."""
