"""The exceptions snnet-export raises.

Every error a user can cause derives from :class:`SNNetExportError`; the CLI turns these into one
line and a non-zero exit. Leaves also subclass the matching built-in so library callers can catch
``KeyError``/``ValueError``/``RuntimeError`` as usual.
"""
from __future__ import annotations


class SNNetExportError(Exception):
    """Root of every error snnet-export raises on purpose."""


class FamilyError(SNNetExportError, ValueError):
    """An anchor family (registered name or YAML spec) is unknown or malformed."""


class ConfigError(SNNetExportError, KeyError):
    """A stitch configuration id or selection does not exist in the family."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class CheckpointError(SNNetExportError, ValueError):
    """A checkpoint is missing, unreadable, or does not match the family."""


class DataError(SNNetExportError, ValueError):
    """A data set path or its contents cannot be used."""


class ExportError(SNNetExportError, RuntimeError):
    """ONNX export or its verification failed."""


class VerifyError(SNNetExportError, RuntimeError):
    """Files of an engine folder failed their checks."""


class BuildError(SNNetExportError, RuntimeError):
    """An engine could not be built or loaded on this machine."""


class InferenceError(SNNetExportError, RuntimeError):
    """Running a loaded stitch failed (bad input shape or dtype, a backend error during a call)."""


class BenchError(SNNetExportError, ValueError):
    """A benchmark request (batches, stitches, backend) or a profile cannot be used."""


class SelectorError(SNNetExportError, ValueError):
    """The runtime selector cannot be built or cannot meet a request."""


class MemoryBudgetError(SelectorError):
    """A ``max_resident_mb`` budget too small to hold the weights and one session (says the minimum)."""


class TargetError(SNNetExportError, ValueError):
    """A target profile is unknown or malformed."""


class DeviceError(SNNetExportError, ValueError):
    """A ``--device`` this machine does not have (``cuda:3`` on a one-GPU box, ``tpu9``)."""


class FolderBusyError(SNNetExportError, RuntimeError):
    """Another process holds the engine folder's write lock (export, build or bench)."""


class MissingDependencyError(SNNetExportError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``exc``'s message (its type name if it has none), at most ``limit`` chars.

    What every error path quotes from a third-party exception (torch, onnx, ORT, YAML): one line,
    never an IndexError on an empty message, never a multi-megabyte dump.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


class ServeError(SNNetExportError, ValueError):
    """A ``serve`` option, an inference request or an engine reload cannot be used."""
