"""``snnet-export check``: a thin command over :func:`snnet_export.engine_build.check.check_folder`.

Its own module only to keep :mod:`snnet_export.cli` short; :mod:`snnet_export.cli`
registers it on the group, which turns library errors into one line.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("check")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("-t", "--target", required=True,
              help="Target profile: dgpu, jetson-orin, jetson-thor, or a path to a YAML profile.")
@click.option("--tensorrt", "tensorrt_version", default=None,
              help="TensorRT version to check against [default: the target's min_tensorrt].")
@click.option("--configs", default=None, help="Stitch ids to check, e.g. 0,3,10-20 (default: every exported one).")
def check_cmd(folder: Path, target: str, tensorrt_version: str | None, configs: str | None) -> None:
    """List what TensorRT's ONNX parser and builder would reject in FOLDER for a target (no GPU needed).

    Checks opsets and op types against the target's TensorRT, the external-data entries, strict ONNX
    type inference, the batch dimension and DLA limits. Exits 1 when there is an error.
    """
    from ..engine_build.check import check_folder

    result = check_folder(folder, target, tensorrt_version=tensorrt_version, configs=configs)
    click.echo(result.summary())
    sys.exit(0 if result.ok else 1)
