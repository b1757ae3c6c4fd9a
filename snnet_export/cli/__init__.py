"""The ``snnet-export`` command line: a thin layer over the library.

Each command parses its options and calls one library function. Errors the user can cause
(:class:`~snnet_export.errors.SNNetExportError`) become one line on stderr and exit code 1,
never a traceback.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .. import __version__
from .check import check_cmd
from .conformance import conformance_cmd
from .params import SELECTION, FiniteFloat
from .serve import serve_cmd
from .train import eval_cmd, train_cmd
from ..errors import SNNetExportError, first_line


class _Group(click.Group):
    """A click group that turns library errors and Ctrl-C into one clean line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SNNetExportError as exc:
            raise click.ClickException(str(exc)) from None
        except ModuleNotFoundError as exc:  # a command whose extra is not installed (deploy-only install)
            from ..deps import missing_dependency

            name = ctx.invoked_subcommand or "this command"
            err = missing_dependency(exc, f"`snnet-export {name}`")
            if err is None:
                raise
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted; finished steps are kept and the next run resumes.", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except OSError as exc:  # the environment: permissions, full disk, read-only folders, devices
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise click.ClickException(f"{exc.strerror or first_line(exc)}{where}") from None
        except Exception as exc:  # noqa: BLE001 - the one place a stray error becomes one line
            if (ctx.params.get("verbose") or 0) > 1:
                raise  # -vv: show the traceback for a bug report
            raise click.ClickException(
                f"{type(exc).__name__}: {first_line(exc)} (unexpected: re-run with -vv for details and "
                "report it)") from None


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
    from ..model.family import list_families

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
    from ..model.flops import config_records

    rows = config_records(family)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        r["GFLOPs"] = f"{r['flops'] / 1e9:.4f}"
        r["Mparams"] = f"{r['params'] / 1e6:.4f}"
        r["layer"] = None if r["stitch_layer"] is None else ".".join(map(str, r["stitch_layer"]))
    emit_table(rows, ["id", "path", "layer", "GFLOPs", "Mparams"])


@cli.command()
@click.argument("family")
@click.option("--json", "as_json", is_flag=True, help="JSON object on stdout.")
def info(family: str, as_json: bool) -> None:
    """Show FAMILY's anchors, stitching settings and parameter totals."""
    from ..model.flops import family_info

    data = family_info(family)
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if key == "anchors":
            for a in value:
                width = "/".join(map(str, a["width"])) if isinstance(a["width"], list) else a["width"]
                click.echo(f"  anchor {a['name']:<4} {a['model']:<28} width {width!s:<5} params {a['params']:,}")
        else:
            click.echo(f"{key}: {value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{key}: {value}")


# ---- build (TensorRT engines) ----------------------------------------------------------------

@cli.command("build")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("-t", "--target", required=True,
              help="Target profile: dgpu, jetson-orin, jetson-thor, or a path to a YAML profile.")
@click.option("--configs", type=SELECTION, default=None, help="Stitch ids to build, e.g. 0,3,10-20 (default: every exported one).")
@click.option("--strip-weights", is_flag=True,
              help="Weight-stripped engines, refitted from the ONNX + shared weight file when loaded.")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Timing-cache file shared by all stitch builds [default: FOLDER/trt/TARGET/timing.cache].")
@click.option("--force", is_flag=True, help="Rebuild engines that are up to date.")
@click.option("--dry-run", is_flag=True, help="Print the build plan and exit (needs no TensorRT).")
def build_cmd(folder: Path, target: str, configs: str | None, strip_weights: bool, timing_cache: Path | None,
              force: bool, dry_run: bool) -> None:
    """Build one TensorRT engine per stitch of the engine FOLDER for a GPU or Jetson target.

    Engines go to FOLDER/trt/TARGET/stitch_NNN.engine and are recorded in FOLDER/manifest.json;
    a second run skips the engines that are up to date.
    """
    from ..engine_build import build_engines, format_plan
    from ..engine_folder.manifest import load_manifest

    result = build_engines(folder, target, configs=configs, strip_weights=strip_weights,
                           timing_cache=timing_cache, dry_run=dry_run, force=force)
    if dry_run:
        click.echo(format_plan(result.plan, load_manifest(folder)) + (f"\n{result.check.summary()}" if result.check else ""))
        return
    click.echo(f"{len(result.built)} engine(s) built, {len(result.skipped)} up to date, "
               f"in {result.plan.out_dir} (recorded in {folder / 'manifest.json'})")


# ---- export, verify ---------------------------------------------------------------------------

@cli.command()
@click.argument("family")
@click.argument("checkpoint")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Engine folder, e.g. engines/deit-fp16.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset (18 parses in TensorRT 10.3 / JetPack 6).")
@click.option("--configs", type=SELECTION, default=None, help="Stitch ids to export, e.g. 0,3,10-20 (default: all).")
@click.option("--batch-max", type=click.IntRange(1), default=64, show_default=True, help="Largest batch the engines serve.")
@click.option("--accuracy", type=click.Path(dir_okay=False), default=None, help="Results JSONL whose Top-1 goes into the manifest.")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights when CHECKPOINT is 'random'.")
@click.option("--force", is_flag=True, help="Replace a folder holding a different export.")
@click.option("--no-verify", is_flag=True, help="Skip the ONNX Runtime vs PyTorch check (not recommended).")
@click.option("--from", "from_folder", type=click.Path(file_okay=False), default=None,
              help="Reuse the graphs of this FP32 export (same family and checkpoint) instead of tracing again.")
def export(family: str, checkpoint: str, out: str, precision: str, opset: int, configs: str | None,
           batch_max: int, accuracy: str | None, exporter: str, seed: int, force: bool, no_verify: bool,
           from_folder: str | None) -> None:
    """Export every stitch of FAMILY at CHECKPOINT (or 'random') to ONNX with shared weights."""
    import time

    from ..export.stitches import export_stitches

    t0 = time.perf_counter()
    m = export_stitches(family, checkpoint, out, precision=precision, opset=opset, configs=configs,
                        batch_max=batch_max, accuracy=accuracy, force=force, verify=not no_verify,
                        seed=seed, exporter=exporter, from_folder=from_folder)
    w = m["weights"]
    checked = sum(bool((e.get("verified") or {}).get("ok")) for e in m["configs"])
    state = "all verified" if checked == len(m["configs"]) else (
        f"{checked} verified, {len(m['configs']) - checked} NOT verified against PyTorch (--no-verify)")
    click.echo(f"{len(m['configs'])} stitches in {out}: {len(w['tensors'])} tensors, {w['size'] / 2**20:.1f} MiB "
               f"in {w['file']}, {state}, {time.perf_counter() - t0:.0f} s")


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="JSON summary on stdout.")
def verify(folder: str, as_json: bool) -> None:
    """Re-check an engine FOLDER on disk: graphs, hashes, external-data locations."""
    from ..engine_folder.integrity import verify_folder

    summary = verify_folder(folder)
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"OK: {summary['stitches']} stitches, {summary['tensors']} tensors, "
                   f"{summary['weight_bytes'] / 2**20:.1f} MiB of weights verified in {folder}")


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--min-throughput", type=FiniteFloat(0, min_open=True), default=None, help="Images/s the app needs.")
@click.option("--max-latency-ms", type=FiniteFloat(0, min_open=True), default=None, help="Latency limit per call (p90).")
@click.option("--batch", type=click.IntRange(1), default=None, help="Batch size the app runs.")
@click.option("--backend", type=click.Choice(["auto", "ort", "trt"]), default="auto", show_default=True)
@click.option("--max-resident-mb", type=FiniteFloat(0, min_open=True), default=None,
              help="Memory budget (MiB) for the weights plus resident sessions; refused below the minimum.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def select(folder: str, min_throughput: float | None, max_latency_ms: float | None, batch: int | None,
           backend: str, max_resident_mb: float | None, as_json: bool) -> None:
    """Print the stitch the runtime selector would run for a budget."""
    import warnings

    from ..runtime import Selector

    if min_throughput is None and max_latency_ms is None:
        raise click.UsageError("give --min-throughput and/or --max-latency-ms")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = Selector(folder, backend=backend, resident="none", max_resident_mb=max_resident_mb)
        sel.set_budget(min_throughput=min_throughput, max_latency_ms=max_latency_ms, batch=batch)
        if batch is not None:
            _warn_batch(batch, sel.manifest.get("batch_max"), sel.profile["batches"])
    info = sel.describe()
    if as_json:
        emit_json({**info, "warnings": [str(w.message) for w in caught]})
        return
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    b = sel.budget["batch"]
    speeds = info["throughput"]
    near = min(speeds, key=lambda m: abs(m - b))  # what the selector compares for an unmeasured batch
    click.echo(f"stitch {info['id']}: {info['path']}  Top-1/score {info['accuracy']:.2f}  "
               f"{speeds[near]:.1f} img/s at batch {near}  (frontier of {len(sel.frontier)})")


def _warn_batch(batch: int, batch_max: int | None, measured: list[int]) -> None:
    """Say when a budget's batch lies outside what the folder serves or what was measured."""
    import warnings

    if batch_max and batch > batch_max:
        warnings.warn(f"batch {batch} exceeds the folder's batch_max {batch_max}: the engines serve at most "
                      f"{batch_max} images per call", stacklevel=2)
    elif batch not in measured:
        warnings.warn(f"batch {batch} was not measured (profile batches {measured}): using the nearest "
                      "measured batch's speed; bench with --batch to measure it", stacklevel=2)


@cli.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="engines/demo", show_default=True)
@click.option("--fast", is_flag=True, help="A minutes-long variant (few steps, 7 stitches): what the tests run.")
def demo(workdir: str, fast: bool) -> None:
    """Run the whole pipeline on the digits data set and write the report."""
    from ..demo import DemoSettings, run_demo

    result = run_demo(workdir, DemoSettings.fast() if fast else None)
    click.echo("")
    for line in result.summary:
        click.echo(line)
    times = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
    click.echo(f"report: {result.report} (plot: {result.report.parent / 'throughput_vs_top1.png'}); {times}")


# ---- bench, report ------------------------------------------------------------------------------

@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--backend", type=click.Choice(["ort", "trt"]), default="ort", show_default=True)
@click.option("--batch", "batches", default="1,16", show_default=True, help="Batch sizes, e.g. 1,16.")
@click.option("--configs", type=SELECTION, default=None, help="Stitch ids, e.g. 0,3,10-20 (default: every exported one).")
@click.option("--baseline", type=click.Choice(["torch"]), default=None, help="Also time PyTorch eager (interleaved).")
@click.option("--threads", type=click.IntRange(1), default=None, help="Intra-op threads [default: usable cores].")
@click.option("--runs", type=click.IntRange(1), default=20, show_default=True, help="Timed runs per stitch and batch (at least).")
@click.option("--warmup", type=click.IntRange(0), default=3, show_default=True)
@click.option("--min-seconds", type=FiniteFloat(0), default=1.0, show_default=True,
              help="Keep timing each stitch and batch at least this long.")
@click.option("--ort-mode", type=click.Choice(["shared", "fused", "fast"]), default="fused", show_default=True,
              help="shared: stock graphs, one weight copy; fused: + fused attention (less memory per "
                   "session; the selector runs the mode bench measured); fast: + prepacked weights "
                   "(a private copy per session).")
@click.option("--spinning/--no-spinning", default=None,
              help="ORT idle-thread spinning [default: ORT's, on]; --no-spinning helps on a busy CPU.")
@click.option("--target", default=None, help="TensorRT target whose engines to time (default: the only one).")
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True, help="Interleaved rounds over all stitches.")
@click.option("--replace", is_flag=True, help="Replace this device's profile, not merge (needed if settings differ).")
@click.option("--ci-target", type=FiniteFloat(0), default=0.02, show_default=True,
              help="Keep sampling a stitch until its median's 95% CI half-width is this fraction of the median, "
                   "or it is separated from / tied with its FLOPs neighbours (0: first pass only).")
@click.option("--time-budget", type=FiniteFloat(0), default=None, help="Seconds of measuring at most [default: no limit].")
def bench(folder: Path, backend: str, batches: str, configs: str | None, baseline: str | None, threads: int | None, runs: int,
          warmup: int, min_seconds: float, ort_mode: str, spinning: bool | None, target: str | None, rounds: int, replace: bool,
          ci_target: float, time_budget: float | None) -> None:
    """Measure the stitches of FOLDER on this machine; writes (merges into) FOLDER/profile.<device>.json."""
    from ..bench.measure import profile_from_engines
    from ..bench.report import bench_rows
    from ..engine_folder.profile import profile_path

    prof = profile_from_engines(folder, backend=backend, batches=batches, configs=configs, warmup=warmup, runs=runs,
                                threads=threads, baseline_torch=baseline == "torch", min_seconds=min_seconds,
                                ort_mode=ort_mode, spinning=spinning, target=target, rounds=rounds, replace=replace,
                                ci_target=ci_target or None, time_budget=time_budget)
    emit_table(*bench_rows(prof))
    peak = (prof["environment"].get("matmul_peak") or {}).get("gflops")
    click.echo(f"profile: {profile_path(folder, prof['device'], backend)}"
               + (f" (matmul peak {peak:.0f} GFLOP/s at {prof['environment']['threads']} threads)" if peak else ""))


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--batch", type=click.IntRange(1), default=None, help="Batch to plot [default: the profile's first].")
@click.option("--profile", type=click.Path(dir_okay=False), default=None, help="Profile file [default: the newest].")
def report(folder: Path, batch: int | None, profile: str | None) -> None:
    """Write FOLDER/report.md and the throughput-vs-Top-1 plot from its measured profile."""
    from ..bench.report import PLOT, report_from_profile

    path = report_from_profile(folder, profile=profile, batch=batch)
    click.echo(f"report: {path} (plot: {path.parent / PLOT}.png, .svg)")


cli.add_command(check_cmd)
cli.add_command(serve_cmd)
cli.add_command(conformance_cmd)
cli.add_command(train_cmd)
cli.add_command(eval_cmd)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="snnet-export")
