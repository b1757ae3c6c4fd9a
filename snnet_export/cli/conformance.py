"""``snnet-export conformance``: write the shared traces another Selector implementation replays."""
from __future__ import annotations

from pathlib import Path

import click


@click.group("conformance")
def conformance_cmd() -> None:
    """Conformance traces of the runtime Selector (replayed by the native library's snnet-select-replay)."""


@conformance_cmd.command("generate")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; the same seed writes the same traces.")
@click.option("--count", type=click.IntRange(1), default=300, show_default=True, help="Traces to write.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for trace_NNNNN.json files.")
def generate_cmd(seed: int, count: int, out: Path) -> None:
    """Write COUNT seeded traces: synthetic folders, events and the Python Selector's decisions."""
    from ..conformance import generate_traces

    summary = generate_traces(seed, count, out)
    click.echo(f"wrote {summary['traces']} traces ({summary['valid']} valid folders, {summary['bad']} broken, "
               f"{summary['events']} events) to {out}")


@conformance_cmd.command("folder")
@click.option("--family", type=click.Choice(["deit_tsb", "levit", "resnet", "resnet_swin", "swin_tsb"]),
              default="deit_tsb", show_default=True, help="Whose official stitch table to use.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def folder_cmd(family: str, seed: int, out: Path) -> None:
    """Write one synthetic engine folder (manifest + profile, no engines) for examples and benchmarks."""
    from ..conformance.folders import write_folder

    write_folder(out, family, seed)
    click.echo(f"wrote a synthetic {family} folder to {out} (manifest.json, profile.synthetic.json)")
