"""What ``snnet-export serve`` is asked to do (:class:`ServeOptions`), and the process set-up Triton needs.

PyTriton starts ``tritonserver`` as a child process whose Python-backend stub links ``libpython``.
The stub finds the *system's* libpython unless the child's ``LD_LIBRARY_PATH`` names the running
interpreter's own library folder; under a pyenv or venv interpreter the model then fails to load
(``'_thread.RLock' object has no attribute '_recursion_count'``: a 3.11 stub on another 3.11's
runtime). PyTriton copies this process's environment when it starts the server, so
:func:`prepare_environment` only has to put ``sysconfig``'s ``LIBDIR`` first in it before then.
"""
from __future__ import annotations

import math
import os
import re
import sysconfig
from dataclasses import dataclass

from ..errors import ServeError

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ServeOptions:
    """Options of ``snnet-export serve`` (checked by :meth:`check`; the CLI's defaults are these).

    Attributes:
        model_name: Triton model name clients address (``/v2/models/<name>/infer``).
        slo_ms: latency objective per request (queue + compute), held at p99 by the policy.
        host: address every endpoint binds (loopback by default; ``0.0.0.0`` in a container).
        http_port, grpc_port, metrics_port: Triton's KServe v2 HTTP, gRPC and Prometheus ports.
        max_batch: largest batch (images) Triton's dynamic batcher forms; ``None``: the largest
            batch the folder's profile measured.
        max_queue_delay_ms: how long the batcher may hold a request to fill a batch.
        max_queue: requests waiting in Triton's queue beyond which new ones are refused at once
            (UNAVAILABLE).
        stitch: serve only this stitch (no switching; what the load benchmark's baselines run).
        threads: ONNX Runtime intra-op threads (default: ORT's choice).
        overhead_ms: per-request time outside the model (transport, Triton, PyTriton's IPC) the
            policy reserves out of every budget.
        resident: ``frontier`` (default) or ``all`` stitches loaded (all can be pinned).
        stats_every_s: seconds between the per-stitch request-count log lines.
        max_resident_mb: keep the weight file plus the resident ONNX Runtime sessions within this
            many MiB (``Selector(max_resident_mb=...)``): frontier stitches load at start as far as
            they fit (most accurate first), any other on its first call, evicting the least recently
            used; a budget below the weights plus the largest session is refused before Triton starts.
    """

    model_name: str = "snnet"
    slo_ms: float = 50.0
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int | None = None
    max_queue_delay_ms: float = 1.0
    max_queue: int = 64
    stitch: int | None = None
    threads: int | None = None
    overhead_ms: float = 1.0
    resident: str = "frontier"
    stats_every_s: float = 10.0
    max_resident_mb: float | None = None

    def check(self) -> "ServeOptions":
        """Raise :class:`ServeError` naming the first unusable option; returns ``self``."""
        if not _NAME.match(self.model_name):
            raise ServeError(f"--model-name must be letters, digits, '.', '_' or '-', got {self.model_name!r}")
        for name in ("slo_ms", "max_queue_delay_ms", "overhead_ms", "stats_every_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "slo_ms" and value == 0):
                raise ServeError(f"{name} must be a finite {'positive' if name == 'slo_ms' else 'non-negative'} "
                                 f"number, got {value!r}")
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        if any(not 0 < p < 65536 for p in ports) or len(set(ports)) != 3:
            raise ServeError(f"--http-port, --grpc-port and --metrics-port must be three different ports "
                             f"in 1-65535, got {ports}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ServeError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.max_queue < 1:
            raise ServeError(f"--max-queue must be >= 1, got {self.max_queue}")
        if self.max_resident_mb is not None and (not math.isfinite(self.max_resident_mb)
                                                 or self.max_resident_mb <= 0):
            raise ServeError(f"--max-resident-mb must be a finite positive number of MiB, got {self.max_resident_mb!r}")
        if self.resident not in ("frontier", "all"):
            raise ServeError(f"resident must be frontier or all, got {self.resident!r}")
        return self


def libpython_dir() -> str | None:
    """The running interpreter's ``libpython`` folder (``sysconfig`` ``LIBDIR``), if it has a shared one."""
    libdir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("LDLIBRARY") or ""
    if not libdir or not os.path.isdir(libdir):
        return None
    if library.endswith(".so") or ".so." in library:
        return str(libdir) if os.path.exists(os.path.join(libdir, library)) else None
    return str(libdir)


def prepare_environment(env: dict[str, str] | None = None) -> str | None:
    """Put this interpreter's libpython folder first in ``LD_LIBRARY_PATH`` (of ``env``, default ``os.environ``).

    Call before PyTriton starts ``tritonserver``; returns the folder added (``None`` when there is
    no shared libpython to point at, e.g. a static build: then the system's is the only choice).
    """
    target = os.environ if env is None else env
    libdir = libpython_dir()
    if libdir is None:
        return None
    parts = [p for p in target.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
    target["LD_LIBRARY_PATH"] = ":".join([libdir, *parts])
    return libdir
