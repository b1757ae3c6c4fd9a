"""PyTriton wiring: the Triton model, per-request error statuses, signals and the serving loop.

* Model: input ``input`` FP32 ``[-1, C, H, W]``; outputs ``logits`` FP32 ``[-1, classes]`` and
  ``stitch`` INT32 ``[-1, 1]`` (Triton refuses a per-item scalar, and the Python backend
  does not apply a reshape to ``[-1]``: docs/serve.md). Dynamic batching up
  to ``max_batch`` images, at most ``max_queue_delay_ms`` of delay; the default queue policy
  refuses requests beyond ``max_queue`` waiting ones at once (UNAVAILABLE).
* Per-request errors: PyTriton 0.7 answers a whole batch with one error (its traceback) when the
  inference callable raises. The proxy model PyTriton loads into Triton is patched (one function,
  ``_wrap_response``) so that a response carrying :data:`~.engine.ERROR_KEY` becomes *that
  request's* INVALID_ARG status with our one-line message; its batch-mates are served.
* Signals: SIGTERM/SIGINT drain and exit 0 (:func:`drain_and_stop`): Triton is told to stop (it
  accepts no new connections and finishes the requests it holds); once the model has been idle
  for :data:`QUIET_S` (plus the batcher's delay: Triton's queue is empty), nothing is in flight.
  Triton (>= 24.04) then still waits for every open HTTP connection to close, up to its exit
  timeout (30 s): an idle keep-alive connection (any HTTP client that stays open, a load
  balancer's pool) held an idle server ~31 s on SIGTERM. So when Triton's log says it waits on
  HTTP connections and the model is drained, it is stopped at once. SIGHUP reloads the engine
  folder (:meth:`.engine.EngineHolder.reload`).
* Metrics: Triton's Prometheus endpoint (``/metrics`` on ``metrics_port``: request counts,
  queue and compute durations). Requests per stitch cannot be added there: the inference
  callable runs in this process, not in the Python-backend stub where Triton's custom-metrics
  API lives, and PyTriton 0.7 has no API for custom metrics; the figures go to this server's log
  every ``stats_every_s`` seconds and at exit.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable

import numpy as np

from ..deps import require
from ..errors import ServeError, first_line
from .engine import ERROR_KEY, INPUT, EngineHolder, stats_line
from .options import ServeOptions, prepare_environment

log = logging.getLogger(__name__)

_ANCHOR = ("def _wrap_response(response: Response, requested_outputs_names, model_outputs_dict):\n"
           "    if response.data is not None:")
_PATCH = f'''def _wrap_response(response: Response, requested_outputs_names, model_outputs_dict):
    if response.data is not None and "{ERROR_KEY}" in response.data:  # snnet-export: this request's error
        _msg = bytes(response.data["{ERROR_KEY}"]).decode("utf-8", "replace")
        _code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
        _err = pb_utils.TritonError(_msg) if _code is None else pb_utils.TritonError(_msg, _code)
        return pb_utils.InferenceResponse(output_tensors=[], error=_err)
    if response.data is not None:'''
#: Triton/PyTriton log lines that are noise on a CPU-only machine (no NVML, no DCGM, no GPU)
_NOISE = ("NVML", "nvml", "DCGM", "dcgm", "GPU metrics", "CUDA driver", "CudaDriverHelper", "cudaGetDevice",
          "pinned memory", "model_config_content_name_")
#: Triton's own log kept for PyTriton's error messages (it keeps it all; we keep the tail)
_LOG_TAIL = 20000
#: Triton's exit timeout (s): the longest a drain may take
EXIT_TIMEOUT_S = 30
#: seconds without a batch (beyond the batcher's delay) after which nothing is in flight
QUIET_S = 1.0
#: what Triton logs while its exit waits for open HTTP connections
_HTTP_WAIT = "HTTP service connections"


def _patch_pytriton() -> None:
    """Per-request error statuses; Triton's log through ours, without the CPU-only noise (module docstring)."""
    from pytriton.models.model import Model

    if getattr(Model, "_snnet_patched", False):
        return
    files_of: Callable[..., dict[str, bytes]] = Model.get_proxy_model_files

    def proxy_files(self: Any) -> dict[str, bytes]:
        files = files_of(self)
        key = f"file:{self.model_version}/model.py"
        src = files[key].decode("utf-8")
        if _ANCHOR not in src:
            log.warning("this PyTriton's proxy model differs from 0.7's: a bad request fails its whole batch")
            return files
        files[key] = src.replace(_ANCHOR, _PATCH, 1).encode("utf-8")
        return files

    def record_logs(self: Any, line: bytes | str) -> None:  # Triton's stdout: warnings and errors to our log
        text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
        self._tritonserver_logs = (self._tritonserver_logs + text)[-_LOG_TAIL:]
        pending = getattr(self, "_snnet_line", "") + text  # the output arrives unbuffered, in pieces
        *done, self._snnet_line = pending.split("\n")
        for row in done:
            if _HTTP_WAIT in row:
                self._snnet_http_wait = True
            if row[:1] in ("W", "E") and not any(n in row for n in _NOISE):
                log.warning("triton: %s", row.strip()[:300])
            elif row.strip():
                log.debug("triton: %s", row.rstrip())

    from pytriton.server.triton_server import TritonServer

    TritonServer._record_logs = record_logs
    Model.get_proxy_model_files = proxy_files
    Model._snnet_patched = True


class _QuietTriton(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in _NOISE)


def _quiet_logs() -> None:
    for name in ("pytriton", "tritonclient", "sh"):
        logger = logging.getLogger(name)
        logger.addFilter(_QuietTriton())
        if name != "pytriton":
            logger.setLevel(logging.WARNING)
    logging.getLogger("pytriton").setLevel(logging.WARNING)


def build_triton(holder: EngineHolder, options: ServeOptions) -> Any:
    """A started PyTriton ``Triton`` serving ``holder`` as ``options.model_name`` (call ``stop()``)."""
    require("pytriton", "`snnet-export serve`")
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor, TimeoutAction
    from pytriton.triton import Triton, TritonConfig

    prepare_environment()
    _patch_pytriton()
    _quiet_logs()
    engine = holder.current
    config = TritonConfig(http_address=options.host, http_port=options.http_port, grpc_address=options.host,
                          grpc_port=options.grpc_port, metrics_address=options.host,
                          metrics_port=options.metrics_port, allow_gpu_metrics=False, exit_timeout_secs=EXIT_TIMEOUT_S,
                          log_verbose=0)
    batcher = DynamicBatcher(max_queue_delay_microseconds=int(options.max_queue_delay_ms * 1000),
                             default_queue_policy=QueuePolicy(timeout_action=TimeoutAction.REJECT,
                                                              max_queue_size=options.max_queue))
    triton = Triton(config=config)
    try:
        triton.bind(model_name=options.model_name, infer_func=holder.infer,
                    inputs=[Tensor(name=INPUT, dtype=np.float32, shape=engine.chw)],
                    outputs=[Tensor(name="logits", dtype=np.float32, shape=(engine.classes,)),
                             Tensor(name="stitch", dtype=np.int32, shape=(1,))],
                    config=ModelConfig(batching=True, max_batch_size=holder.max_batch, batcher=batcher),
                    strict=False)
        triton.run()
    except Exception as exc:
        triton.stop()
        raise ServeError(f"Triton Inference Server did not start serving {engine.folder}: {first_line(exc)} "
                         "(are the ports free?)") from None
    return triton


def serve_folder(folder: str | Path, options: ServeOptions, ready: Callable[[], None] | None = None) -> int:
    """Serve ``folder`` until SIGTERM/SIGINT (main thread) or ``stop`` below; returns the exit code."""
    options.check()
    require("pytriton", "`snnet-export serve`")  # before loading anything: say which extra is missing
    holder = EngineHolder(folder, options)
    if holder.max_batch > max(holder.current.policy._batches):
        log.warning("--max-batch %d is larger than the largest profiled batch %d: the policy predicts larger "
                    "batches from that one (bench the folder at the batches you serve)", holder.max_batch,
                    max(holder.current.policy._batches))
    stop, reload_asked = threading.Event(), threading.Event()
    previous = _install_signals(stop, reload_asked)  # before Triton starts: a SIGTERM during start-up stops cleanly
    try:
        triton = build_triton(holder, options)
    except Exception:
        holder.close()
        _restore_signals(previous)
        raise
    eng = holder.current
    log.info("serving %s as model '%s' on http://%s:%d (gRPC %d, metrics %d): SLO %.1f ms, %s, stitches %s",
             eng.folder, options.model_name, options.host, options.http_port, options.grpc_port,
             options.metrics_port, options.slo_ms,
             f"fixed stitch {options.stitch}" if options.stitch is not None else "SLO policy", eng.selector.resident)
    if ready is not None:
        ready()
    try:
        _loop(triton, holder, options, stop, reload_asked)
    finally:
        log.info("stopping: Triton finishes the in-flight requests")
        drain_and_stop(triton, holder, options)
        log.info(stats_line(holder.counter, holder.current))
        holder.close()
        _restore_signals(previous)
    return 0


def _loop(triton: Any, holder: EngineHolder, options: ServeOptions, stop: threading.Event,
          reload_asked: threading.Event) -> None:
    last = holder.counter.snapshot()
    waited = 0.0
    while not stop.wait(0.05):
        if reload_asked.is_set():
            reload_asked.clear()
            threading.Thread(target=holder.reload, name="snnet-reload", daemon=True).start()
        if not triton.is_alive():
            log.error("Triton Inference Server stopped unexpectedly")
            raise SystemExit(1)
        waited += 0.05
        if options.stats_every_s and waited >= options.stats_every_s:
            waited, now = 0.0, holder.counter.snapshot()
            if now != last:
                log.info(stats_line(holder.counter, holder.current))
                last = now


def drain_and_stop(triton: Any, holder: EngineHolder, options: ServeOptions) -> None:
    """Let Triton finish the requests it holds, then stop it without waiting on idle connections."""
    server = getattr(triton, "_triton_server", None)
    cmd = getattr(server, "_tritonserver_running_cmd", None)
    if server is None or cmd is None or not server.is_alive() or not hasattr(server, "_on_exit"):
        triton.stop()  # not the PyTriton 0.7 this was written for: its own stop (waits up to the timeout)
        return
    with server._on_exit_lock:  # PyTriton's exit callback would stop it from another thread meanwhile
        callbacks, server._on_exit = list(server._on_exit), []
    try:
        cmd.process.signal(signal.SIGINT)  # Triton: no new connections; the requests it holds finish
        quiet = QUIET_S + options.max_queue_delay_ms / 1e3
        deadline = time.monotonic() + EXIT_TIMEOUT_S + 2
        while server.is_alive() and time.monotonic() < deadline:
            if getattr(server, "_snnet_http_wait", False) and holder.idle_s() >= quiet:
                log.info("drained: no request in flight; stopping Triton without waiting for idle HTTP "
                         "connections to close")
                cmd.process.signal(signal.SIGKILL)
                _wait_exit(server, 10.0)
                break
            time.sleep(0.02)
    except Exception as exc:  # noqa: BLE001 - stopping goes on below whatever happened here
        log.warning("drain: %s", first_line(exc))
    finally:
        with server._on_exit_lock:
            server._on_exit = callbacks + server._on_exit
    triton.stop()


def _wait_exit(server: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while server.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)


def _install_signals(stop: threading.Event, reload_asked: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        reload_asked.set()

    previous: dict[int, Any] = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
