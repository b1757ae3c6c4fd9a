"""Conformance traces: the Python Selector's decisions as language-neutral JSON for other implementations.

    from snnet_export.conformance import generate_traces
    generate_traces(seed=7, count=300, out="traces/")    # or: snnet-export conformance generate ...

Each trace is a synthetic engine folder (a manifest and a profile from one of the five families'
official stitch tables), options to open it with, and a seeded sequence of events (budgets,
served-call latencies, ``choose``, ``describe``) with what the real
:class:`~snnet_export.runtime.Selector` decided after each; broken folders record the error kind.
The native library's ``snnet-select-replay`` replays them (``native/``, ``docs/native.md``).
Owns: :mod:`.folders` (synthetic folders), :mod:`.events` (the event script run on the
reference), :mod:`.bad` (mutations), :mod:`.generate` (trace files). No torch here.
"""
from __future__ import annotations

from .generate import TRACE_FORMAT, TRACE_VERSION, generate_traces, make_trace

__all__ = ["TRACE_FORMAT", "TRACE_VERSION", "generate_traces", "make_trace"]
