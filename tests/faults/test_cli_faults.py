"""The real CLI on bad input and a hostile environment: one `Error:` line, non-zero exit, no traceback."""
from __future__ import annotations

import os
import stat

import pytest

from conftest import assert_clean_refusal, run_cli

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.parametrize("args,needle", [
    (["train", "tiny", "--data", "digits", "-o", "{tmp}/t", "--lr", "nan"], "not a finite number"),
    (["train", "tiny", "--data", "digits", "-o", "{tmp}/t", "--device", "tpu9"], "device 'tpu9'"),
    (["eval", "tiny", "random", "--data", "digits", "--out", "{tmp}/r.jsonl", "--device", "cuda:3"], "cuda:3"),
    (["export", "tiny", "random", "-o", "/dev/null"], "/dev/null"),
    (["export", "tiny", "random", "-o", "{tmp}/afile/sub"], "is not a folder"),
    (["export", "tiny", "random", "-o", "{tmp}/e", "--configs", ""], "--configs"),
    (["export", "tiny", "random", "-o", "{tmp}/e", "--configs", "0-2000000000"], "--configs"),
    (["info", "{tmp}/binary.yaml"], "not a text file"),
    (["export", "tiny", "{tmp}/empty.pth", "-o", "{tmp}/e"], "checkpoint"),
    (["verify", "{tmp}/afile"], "afile"),
])
def test_bad_command_lines_are_one_line(tmp_path, args, needle):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\xff\xfe")
    (tmp_path / "empty.pth").write_bytes(b"")
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert_clean_refusal(proc, needle)


def test_select_refuses_nan_and_warns_about_huge_batches(folder):
    assert_clean_refusal(run_cli("select", str(folder), "--min-throughput", "nan"), "finite")
    proc = run_cli("select", str(folder), "--min-throughput", "10", "--batch", "100000")
    assert proc.returncode == 0, proc.stderr
    assert "batch 100000 exceeds the folder's batch_max" in proc.stderr


def test_tampered_folder_through_the_cli(folder):
    (folder / "manifest.json").write_text('{"schema": "snnet-export/manifest", "schema_version": 1, "configs": null}')
    for cmd in (["verify", str(folder)], ["select", str(folder), "--min-throughput", "1"],
                ["bench", str(folder)], ["report", str(folder)]):
        assert_clean_refusal(run_cli(*cmd), "manifest.json")


def test_no_verify_does_not_claim_verified(tmp_path):
    proc = run_cli("export", "tiny", "random", "-o", str(tmp_path / "nv"), "--configs", "0", "--no-verify", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "all verified" not in proc.stdout and "NOT verified" in proc.stdout


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_before_measuring(folder):
    mode = folder.stat().st_mode
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert_clean_refusal(run_cli("bench", str(folder), "--runs", "1", "--min-seconds", "0"), "cannot write")
        assert_clean_refusal(run_cli("report", str(folder)), "cannot write")
    finally:
        folder.chmod(mode)


@pytest.mark.parametrize("exc,needle", [(ZeroDivisionError("division by zero\nmore"), "ZeroDivisionError: division by zero"),
                                        (PermissionError(13, "Permission denied", "/x/profile.json"),
                                         "Permission denied (/x/profile.json)")])
def test_one_error_path_for_unexpected_exceptions(monkeypatch, tmp_path, exc, needle):
    """Anything a command raises goes through `_Group.invoke`: one line, no traceback; -vv shows it."""
    from click.testing import CliRunner

    import snnet_export.engine_folder.integrity as integrity
    from snnet_export.cli import cli

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(integrity, "verify_folder", boom)
    res = CliRunner().invoke(cli, ["verify", str(tmp_path)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert [ln for ln in res.output.splitlines() if ln.startswith("Error")] == [f"Error: {needle}" + (
        " (unexpected: re-run with -vv for details and report it)" if "Zero" in needle else "")]
    if "Zero" in needle:
        res = CliRunner().invoke(cli, ["-vv", "verify", str(tmp_path)])
        assert isinstance(res.exception, ZeroDivisionError)  # the traceback is there for a bug report
