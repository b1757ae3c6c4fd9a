"""Measurement and reporting: ``profile.<device>.json`` from an engine folder, and the report.

Owns: :mod:`.measure` (``profile_from_engines``: times every stitch with the runtime's own
runners in interleaved rounds), :mod:`.stats` (CI of the median, rank agreement, machine state),
:mod:`.peak` (the machine's FP32 matmul peak, achieved fraction), :mod:`.merge` (merging a re-bench
into the profile, ranking quality), :mod:`.baseline` (optional PyTorch eager baseline),
:mod:`.report` (``report.md``, plot with CIs, Pareto table).
May import: NumPy, :mod:`snnet_export.engine_folder`, :mod:`snnet_export.runtime` (the same
runners the selector uses), matplotlib (lazily, ``[plot]`` extra), torch (lazily, only for the
optional PyTorch baseline). No torch at import time.
"""
from __future__ import annotations

from .measure import BenchError, profile_from_engines
from .report import report_from_profile

__all__ = ["BenchError", "profile_from_engines", "report_from_profile"]
