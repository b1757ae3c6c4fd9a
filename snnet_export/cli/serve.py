"""``snnet-export serve``: a thin command over :func:`snnet_export.serve.serve_folder`."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .params import FiniteFloat

_PORT = click.IntRange(1, 65535)


@click.command("serve")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--model-name", default="snnet", show_default=True, help="Triton model name clients address.")
@click.option("--slo-ms", type=FiniteFloat(min=0, min_open=True), default=50.0, show_default=True,
              help="Latency objective per request (queue + compute, p99).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the endpoints bind (0.0.0.0 in a container).")
@click.option("--http-port", type=_PORT, default=8000, show_default=True)
@click.option("--grpc-port", type=_PORT, default=8001, show_default=True)
@click.option("--metrics-port", type=_PORT, default=8002, show_default=True)
@click.option("--max-batch", type=click.IntRange(1), default=None,
              help="Largest batch (images) of the dynamic batcher [default: the largest profiled batch].")
@click.option("--max-queue-delay-ms", type=FiniteFloat(min=0), default=1.0, show_default=True,
              help="How long the batcher may hold a request to fill a batch.")
@click.option("--max-queue", type=click.IntRange(1), default=64, show_default=True,
              help="Waiting requests beyond which new ones are refused at once (UNAVAILABLE).")
@click.option("--stitch", type=int, default=None, help="Serve only this stitch id (no switching).")
@click.option("--resident", type=click.Choice(["frontier", "all"]), default="frontier", show_default=True,
              help="Stitches loaded (and pinnable): the Pareto frontier or all of them.")
@click.option("--threads", type=click.IntRange(1), default=None, help="ONNX Runtime intra-op threads.")
@click.option("--overhead-ms", type=FiniteFloat(min=0), default=1.0, show_default=True,
              help="Per-request time outside the model the policy reserves from every budget.")
@click.option("--max-resident-mb", type=FiniteFloat(0, min_open=True), default=None,
              help="Memory budget (MiB) for the weights plus resident sessions (ONNX Runtime); refused "
                   "below the minimum before the server starts.")
def serve_cmd(folder: Path, model_name: str, slo_ms: float, host: str, http_port: int, grpc_port: int,
              metrics_port: int, max_batch: int | None, max_queue_delay_ms: float, max_queue: int,
              stitch: int | None, resident: str, threads: int | None, overhead_ms: float,
              max_resident_mb: float | None) -> None:
    """Serve FOLDER on Triton Inference Server (KServe v2 HTTP/gRPC), switching stitches to hold --slo-ms.

    Request parameters: `stitch` pins a stitch id, `max_latency_ms` sets that request's budget.
    SIGTERM drains and exits 0; SIGHUP reloads FOLDER (follow a symlink to publish a new version).
    Needs the [serve] extra: pip install 'snnet-export[serve]'.
    """
    from ..serve import ServeOptions, serve_folder

    options = ServeOptions(model_name=model_name, slo_ms=slo_ms, host=host, http_port=http_port,
                           grpc_port=grpc_port, metrics_port=metrics_port, max_batch=max_batch,
                           max_queue_delay_ms=max_queue_delay_ms, max_queue=max_queue, stitch=stitch,
                           threads=threads, overhead_ms=overhead_ms, resident=resident,
                           max_resident_mb=max_resident_mb).check()
    sys.exit(serve_folder(str(folder), options))
