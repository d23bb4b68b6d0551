"""One exception family for every bad input the engine can meet.

Each error message names the offending path or value and says what to do. The CLI prints these without a
traceback; the app shows them in an ``st.error`` box.
"""


class EquiLabError(Exception):
    """Base class: a clear, user-facing error (bad input, missing file, bad config)."""


class DataError(EquiLabError):
    """A dataset cannot be found, read or decoded."""


class ConfigError(EquiLabError):
    """A configuration key or value is unknown or out of range."""


class CheckpointError(EquiLabError):
    """A checkpoint is missing, damaged, unsafe or does not match the architecture."""


class StoreError(EquiLabError):
    """An embedding store is missing, damaged, or was built from something else."""


class WriteError(EquiLabError):
    """A file or directory cannot be written: disk full, file too large, read-only or permission denied."""
