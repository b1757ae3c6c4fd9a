"""The ``snnet-export`` command line: a thin layer over the library.

Each command parses its options and calls one library function. Errors the user can cause
(:class:`~snnet_export.errors.SNNetExportError`) become one line on stderr and exit code 1,
never a traceback.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from . import __version__
from .errors import SNNetExportError


class _Group(click.Group):
    """A click group that turns library errors and Ctrl-C into one clean line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SNNetExportError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted; finished steps are kept and the next run resumes.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snnet-export")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Compile a Stitchable Neural Network (SN-Net) into per-stitch engines with shared weights."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s" if verbose == 0 else "%(levelname)s %(name)s: %(message)s")
    for noisy in ("torch", "onnxscript", "onnx_ir", "timm", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def emit_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print ``rows`` as a plain aligned table with the given columns."""
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# ---- families, configs, info ----------------------------------------------------------------

@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout.")
def families(as_json: bool) -> None:
    """List the registered anchor families."""
    from .family import list_families

    rows = [{"name": f.name, "anchors": "/".join(f"{a.name}={a.model}" for a in f.anchors),
             "description": f.description} for f in list_families()]
    if as_json:
        emit_json(rows)
    else:
        emit_table(rows, ["name", "description"])


@cli.command()
@click.argument("family")
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout.")
def configs(family: str, as_json: bool) -> None:
    """List every stitch configuration of FAMILY (name or YAML path) with FLOPs and params."""
    from .flops import config_records

    rows = config_records(family)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        r["GFLOPs"] = f"{r['flops'] / 1e9:.4f}"
        r["Mparams"] = f"{r['params'] / 1e6:.4f}"
        r["layer"] = None if r["stitch_layer"] is None else "{}.{}".format(*r["stitch_layer"])
    emit_table(rows, ["id", "path", "layer", "GFLOPs", "Mparams"])


@cli.command()
@click.argument("family")
@click.option("--json", "as_json", is_flag=True, help="JSON object on stdout.")
def info(family: str, as_json: bool) -> None:
    """Show FAMILY's anchors, stitching settings and parameter totals."""
    from .flops import family_info

    data = family_info(family)
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if key == "anchors":
            for a in value:
                click.echo(f"  anchor {a['name']:<4} {a['model']:<28} width {a['width']:<5} params {a['params']:,}")
        else:
            click.echo(f"{key}: {value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{key}: {value}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="snnet-export")


if __name__ == "__main__":
    main()
