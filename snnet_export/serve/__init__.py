"""``snnet-export serve``: an engine folder behind NVIDIA Triton Inference Server, through PyTriton.

Triton does the serving (KServe v2 HTTP/gRPC, dynamic batching, health, metrics, bounded queues);
this package is only the policy: which stitch answers each batch. Modules, in the order a request
meets them:

* :mod:`.options`  -- :class:`ServeOptions` (the CLI's options, checked once) and the process set-up
  PyTriton needs (``LD_LIBRARY_PATH`` for a pyenv/venv interpreter's libpython);
* :mod:`.server`   -- PyTriton wiring: model config, per-request error responses, signals, the loop;
* :mod:`.requests` -- the one door for request inputs and parameters (one-line errors);
* :mod:`.policy`   -- :class:`SloPolicy`: the runtime Selector's closed loop fed with queue delay
  plus compute time, one stitch per batch;
* :mod:`.engine`   -- :class:`EngineHolder`: the loaded Selector, swapped whole on reload.

No torch here: the server runs from the deploy install plus the ``[serve]`` extra.
"""
from __future__ import annotations

from .options import ServeOptions

__all__ = ["ServeOptions", "serve_folder"]


def serve_folder(folder: str, options: ServeOptions | None = None) -> int:
    """Serve ``folder`` until SIGTERM/SIGINT; returns the process exit code (0 after a clean drain)."""
    from .server import serve_folder as _serve

    return _serve(folder, options or ServeOptions())
