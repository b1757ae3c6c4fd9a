"""Run the whole battery of hostile inputs through the real CLI and count how each one ends.

Every case is a subprocess of ``python -m snnet_export.cli`` (the console entry point) on a bad
command line, a hostile environment, or a copy of a real tiny export with one thing tampered. A
case ends in one of:

* ``refused``: non-zero exit, exactly one ``Error:`` line, no traceback (what we want for bad input);
* ``ok``: exit 0 where the input is legitimate (e.g. the resume after a kill), checked by ``check``;
* ``traceback``: a Python traceback reached the user;
* ``silent_wrong``: exit 0 on an input that must be refused, or a ``check`` that failed;
* ``data_loss``: a finished stitch missing afterwards, or a folder that no longer verifies.

Usage (takes a few minutes on 2 cores; run under the benchmark lock):
    flock /tmp/snnet-bench.lock .venv/bin/python benchmarks/fault_battery.py
Writes benchmarks/results/fault_battery.json and .md.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
IDS = "0,1,70"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snnet_export.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def outcome(proc: subprocess.CompletedProcess, expect: str, check: Callable[[], str | None] | None = None) -> dict:
    err = proc.stderr
    errors = [ln for ln in err.splitlines() if ln.startswith("Error")]
    if "Traceback" in err or proc.returncode < 0:
        kind = "traceback"
    elif expect == "refuse":
        kind = "refused" if proc.returncode != 0 and len(errors) == 1 else "silent_wrong"
    else:
        kind = "ok" if proc.returncode == 0 else "silent_wrong"
    note = check() if check is not None and kind in ("ok", "refused") else None
    if note:
        kind = "data_loss" if note.startswith("data loss") else "silent_wrong"
    return {"kind": kind, "rc": proc.returncode, "error": (errors[0] if errors else err.strip()[-200:])[:300],
            "note": note}


# ---- tampering ------------------------------------------------------------------------------------

def _edit(path: Path, fn: Callable[[dict], Any]) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def manifest_edits() -> dict[str, Callable[[dict], Any]]:
    def dele(*keys: Any) -> Callable[[dict], Any]:
        def f(m: dict) -> None:
            obj = m
            for k in keys[:-1]:
                obj = obj[k]
            del obj[keys[-1]]
        return f

    def put(value: Any, *keys: Any) -> Callable[[dict], Any]:
        def f(m: dict) -> None:
            obj = m
            for k in keys[:-1]:
                obj = obj[k]
            obj[keys[-1]] = value
        return f

    eng = {"id": 0, "onnx": "stitch_000.onnx", "size": 1}
    return {
        "missing configs": dele("configs"), "configs null": put(None, "configs"), "missing weights": dele("weights"),
        "missing tensors": dele("weights", "tensors"), "missing onnx": dele("configs", 0, "onnx"),
        "missing initializers": dele("configs", 0, "initializers"),
        "duplicate id": lambda m: m["configs"].append(dict(m["configs"][0])),
        "tensor shape changed": lambda m: m["weights"]["tensors"][0]["shape"].append(2),
        "acc1 'high'": put({"acc1": "high"}, "configs", 0, "accuracy"),
        "acc1 NaN": put({"acc1": math.nan}, "configs", 0, "accuracy"),
        "onnx absolute path": put("/etc/hostname", "configs", 0, "onnx"),
        "onnx ../ path": put("../outside.onnx", "configs", 0, "onnx"),
        "weight file ../": put("../weights.fp32.bin", "weights", "file"),
        "initializer index out of range": lambda m: m["configs"][0]["initializers"][0].__setitem__(1, 10**6),
        "tensor past file end": put(10**12, "weights", "tensors", 0, "offset"),
        "num_classes changed": put(7, "num_classes"),
        "verified.ok 'yes'": put("yes", "configs", 0, "verified", "ok"),
        "schema_version 99": put(99, "schema_version"),
        "engine file absolute": put({"dgpu": {"stitches": [{**eng, "file": "/tmp/x.engine"}]}}, "engines"),
        "engine file ../": put({"dgpu": {"stitches": [{**eng, "file": "trt/../../x.engine"}]}}, "engines"),
    }


def profile_edits() -> dict[str, Callable[[dict], Any]]:
    def rec(key: str, value: Any, which: int = 0) -> Callable[[dict], Any]:
        return lambda p: p["stitches"][which].__setitem__(key, value)

    return {
        "profile NaN throughput": rec("throughput", math.nan), "profile inf throughput": rec("throughput", math.inf, -1),
        "profile string throughput": rec("throughput", "fast"), "profile negative batch": lambda p: p.__setitem__("batches", [-1, 2]),
        "profile missing latency": lambda p: p["stitches"][0].pop("latency_ms"),
        "profile missing stitches": lambda p: p.pop("stitches"),
        "profile duplicate record": lambda p: p["stitches"].append(dict(p["stitches"][0])),
    }


def verifies(folder: Path, ids: set[int]) -> Callable[[], str | None]:
    def check() -> str | None:
        proc = cli("verify", str(folder), "--json")
        if proc.returncode != 0:
            return f"data loss: folder no longer verifies: {proc.stderr.strip()[:200]}"
        have = {e["id"] for e in json.loads((folder / "manifest.json").read_text())["configs"]}
        return None if ids <= have else f"data loss: stitches {sorted(ids - have)} missing"
    return check


# ---- the battery --------------------------------------------------------------------------------

def command_line_cases(tmp: Path, base: Path) -> list[tuple[str, list[str]]]:
    (tmp / "afile").write_text("x")
    (tmp / "binary.yaml").write_bytes(b"\x00\xff\xfe binary")
    (tmp / "empty.pth").write_bytes(b"")
    (tmp / "bomb.yaml").write_text("\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(7)] + ["description: *h"]))
    (tmp / "nearest_no.yaml").write_text(_tiny_yaml().replace("nearest: true", 'nearest: "no"'))
    (tmp / "classes.yaml").write_text(_tiny_yaml().replace("num_classes: 10", "num_classes: 7", 1))
    (tmp / "heads.yaml").write_text(_tiny_yaml().replace("num_heads: 4", "num_heads: 5"))
    (tmp / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    (tmp / "nopath.jsonl").write_text('{"acc1": 50}\n')
    (tmp / "evil.pth").write_bytes(_evil_pickle(tmp / "PWNED"))
    t = str(tmp)
    return [
        ("--lr nan", ["train", "tiny", "--data", "digits", "-o", f"{t}/t", "--lr", "nan"]),
        ("--lr inf", ["train", "tiny", "--data", "digits", "-o", f"{t}/t", "--lr", "inf"]),
        ("--device tpu9", ["train", "tiny", "--data", "digits", "-o", f"{t}/t", "--device", "tpu9"]),
        ("--device cuda:3 (eval)", ["eval", "tiny", "random", "--data", "digits", "--out", f"{t}/r.jsonl", "--device", "cuda:3"]),
        ("export -o /dev/null", ["export", "tiny", "random", "-o", "/dev/null"]),
        ("export -o under a file", ["export", "tiny", "random", "-o", f"{t}/afile/sub"]),
        ("train -o /dev/null", ["train", "tiny", "--data", "digits", "-o", "/dev/null"]),
        ("eval --out a folder", ["eval", "tiny", "random", "--data", "digits", "--out", t, "--device", "cpu"]),
        ("--configs ''", ["export", "tiny", "random", "-o", f"{t}/e", "--configs", ""]),
        ("--configs 0-2000000000", ["export", "tiny", "random", "-o", f"{t}/e", "--configs", "0-2000000000"]),
        ("--configs 5-1", ["export", "tiny", "random", "-o", f"{t}/e", "--configs", "5-1"]),
        ("--configs 999", ["export", "tiny", "random", "-o", f"{t}/e", "--configs", "999"]),
        ("binary family YAML", ["info", f"{t}/binary.yaml"]),
        ("YAML alias bomb", ["info", f"{t}/bomb.yaml"]),
        ("nearest: \"no\"", ["info", f"{t}/nearest_no.yaml"]),
        ("anchors with different num_classes", ["export", f"{t}/classes.yaml", "random", "-o", f"{t}/c"]),
        ("num_heads not dividing width", ["export", f"{t}/heads.yaml", "random", "-o", f"{t}/h"]),
        ("binary target YAML", ["build", str(base), "-t", f"{t}/binary.yaml", "--dry-run"]),
        ("empty checkpoint (export)", ["export", "tiny", f"{t}/empty.pth", "-o", f"{t}/e"]),
        ("empty checkpoint (eval)", ["eval", "tiny", f"{t}/empty.pth", "--data", "digits", "--out", f"{t}/r.jsonl", "--device", "cpu"]),
        ("empty checkpoint (train --init)", ["train", "tiny", "--data", "digits", "-o", f"{t}/t2", "--init", f"{t}/empty.pth"]),
        ("malicious pickle checkpoint", ["export", "tiny", f"{t}/evil.pth", "-o", f"{t}/e"]),
        ("binary results JSONL", ["export", "tiny", "random", "-o", f"{t}/e", "--accuracy", f"{t}/bin.jsonl"]),
        ("results JSONL without cfg_id", ["export", "tiny", "random", "-o", f"{t}/e", "--accuracy", f"{t}/nopath.jsonl"]),
        ("select --min-throughput nan", ["select", str(base), "--min-throughput", "nan"]),
        ("select --max-latency-ms -1", ["select", str(base), "--max-latency-ms", "-1"]),
        ("verify a file", ["verify", f"{t}/afile"]),
        ("verify a missing folder", ["verify", f"{t}/missing"]),
        ("bench --batch 0", ["bench", str(base), "--batch", "0"]),
        ("bench --batch abc", ["bench", str(base), "--batch", "abc"]),
        ("report --profile binary", ["report", str(base), "--profile", f"{t}/bin.jsonl"]),
    ]


def _tiny_yaml() -> str:
    import yaml

    from snnet_export.model.family import get_family

    return yaml.safe_dump(get_family("tiny").to_dict())


def _evil_pickle(marker: Path) -> bytes:
    import pickle

    class Evil:
        def __reduce__(self) -> tuple:
            return (open, (str(marker), "w"))

    return pickle.dumps({"model": Evil()})


def run_battery(tmp: Path) -> list[dict[str, Any]]:
    base = tmp / "base"
    proc = cli("-q", "export", "tiny", "random", "-o", str(base), "--configs", IDS)
    assert proc.returncode == 0, proc.stderr
    proc = cli("-q", "bench", str(base), "--batch", "1,2", "--runs", "2", "--warmup", "0", "--min-seconds", "0")
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = []

    def add(group: str, name: str, res: dict) -> None:
        rows.append({"group": group, "input": name, **res})
        print(f"{res['kind']:<12} {group:<12} {name}: {res['error'][:110]}", flush=True)

    for name, args in command_line_cases(tmp, base):
        check = (lambda: "malicious pickle ran" if (tmp / "PWNED").exists() else None) if "pickle" in name else None
        add("cli", name, outcome(cli(*args), "refuse", check))
    for name, edit in manifest_edits().items():
        folder = _copy(base, tmp / "m")
        _edit(folder / "manifest.json", edit)
        for cmd in (["verify", str(folder)], ["select", str(folder), "--min-throughput", "1"]):
            add("manifest", f"{name} ({cmd[0]})", outcome(cli(*cmd), "refuse"))
    for payload, label in ((b"\x00\xff binary", "binary manifest"), (b"{not json", "invalid JSON manifest")):
        folder = _copy(base, tmp / "m")
        (folder / "manifest.json").write_bytes(payload)
        add("manifest", label, outcome(cli("verify", str(folder)), "refuse"))
    for name, edit in profile_edits().items():
        folder = _copy(base, tmp / "p")
        _edit(next(folder.glob("profile.*.json")), edit)
        add("profile", name, outcome(cli("select", str(folder), "--min-throughput", "1"), "refuse"))
    folder = _copy(base, tmp / "p")
    next(folder.glob("profile.*.json")).write_bytes(b"{broken")
    add("profile", "profile invalid JSON", outcome(cli("report", str(folder)), "refuse"))
    rows += _folder_faults(tmp, base, add)
    return rows


def _copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _folder_faults(tmp: Path, base: Path, add: Callable[[str, str, dict], None]) -> list[dict[str, Any]]:
    """Symlinked graph, grown and corrupted weight files, concurrent exports, kills mid first stitch."""
    folder = _copy(base, tmp / "s")
    outside = tmp / "outside.onnx"
    shutil.move(folder / "stitch_000.onnx", outside)
    os.symlink(outside, folder / "stitch_000.onnx")
    add("folder", "graph symlinked outside the folder", outcome(cli("select", str(folder), "--min-throughput", "1"), "refuse"))
    folder = _copy(base, tmp / "g")
    weights = folder / "weights.fp32.bin"
    with open(weights, "ab") as f:
        f.write(b"\0" * 4096)
    add("folder", "weight file longer than manifest (verify)", outcome(cli("verify", str(folder)), "refuse"))
    add("folder", "weight file longer: re-run export", outcome(
        cli("-q", "export", "tiny", "random", "-o", str(folder), "--configs", IDS), "ok", verifies(folder, {0, 1, 70})))
    folder = _copy(base, tmp / "c")
    m = json.loads((folder / "manifest.json").read_text())
    with open(folder / "weights.fp32.bin", "r+b") as f:
        f.seek(m["weights"]["tensors"][0]["offset"])
        f.write(b"\xff" * 16)
    add("folder", "corrupted tensor (verify)", outcome(cli("verify", str(folder)), "refuse"))
    add("folder", "corrupted tensor: re-run export repairs", outcome(
        cli("-q", "export", "tiny", "random", "-o", str(folder), "--configs", IDS), "ok", verifies(folder, {0, 1, 70})))
    # two concurrent exports into one folder
    race = tmp / "race"
    shutil.rmtree(race, ignore_errors=True)
    procs = [_popen("export", "tiny", "random", "-o", str(race), "--configs", ids) for ids in ("0,1", "2,70")]
    finished: set[int] = set()
    for ids, p in zip(("0,1", "2,70"), procs):
        _, err = p.communicate(timeout=600)
        if p.returncode == 0:
            finished |= {int(i) for i in ids.split(",")}
        res = outcome(subprocess.CompletedProcess(p.args, p.returncode, "", err), "ok" if p.returncode == 0 else "refuse")
        add("concurrency", f"concurrent export {ids}", res)
    note = verifies(race, finished)()
    add("concurrency", "folder after two concurrent exports", {"kind": "data_loss" if note else "ok", "rc": 0,
                                                                "error": note or "verifies", "note": note})
    # SIGKILL at several moments of the first stitch, then the same command
    for delay in (0.0, 0.3, 0.7, 1.2):
        out = tmp / f"kill{delay}"
        shutil.rmtree(out, ignore_errors=True)
        p = _popen("export", "tiny", "random", "-o", str(out), "--configs", "0,1")
        t_end = time.monotonic() + 120
        while not (out / ".snnet-export.lock").exists() and p.poll() is None and time.monotonic() < t_end:
            time.sleep(0.02)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        add("kill", f"SIGKILL {delay:.1f}s into the first stitch, then the same command", outcome(
            cli("-q", "export", "tiny", "random", "-o", str(out), "--configs", "0,1"), "ok", verifies(out, {0, 1})))
    # a weight file truncated under a live Selector (subprocess: a SIGBUS would show as rc < 0)
    folder = _copy(base, tmp / "live")
    code = ("import os, numpy as np, warnings\nwarnings.simplefilter('ignore')\n"
            "from snnet_export.runtime import Selector\nfrom snnet_export.errors import SNNetExportError\n"
            f"sel = Selector({str(folder)!r}, backend='ort')\nx = np.zeros((1, 3, 32, 32), np.float32)\nsel(x)\n"
            "p = sel.folder / sel.manifest['weights']['file']\nos.truncate(p, p.stat().st_size // 2)\n"
            "try:\n    sel(x)\nexcept SNNetExportError as e:\n    raise SystemExit('Error: ' + str(e))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    add("selector", "weight file truncated under a live Selector", outcome(proc, "refuse"))
    return []


def _popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snnet_export.cli", "-q", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def summarise(rows: list[dict[str, Any]]) -> dict[str, int]:
    kinds = [r["kind"] for r in rows]
    return {"inputs tried": len(rows), "refused cleanly": kinds.count("refused"),
            "accepted correctly (resume/repair/concurrency)": kinds.count("ok"),
            "tracebacks": kinds.count("traceback"), "silent wrong": kinds.count("silent_wrong"),
            "data loss": kinds.count("data_loss")}


def render(summary: dict, env: dict, rows: list[dict]) -> str:
    """The results .md; each error line is a code span, so Markdown (and the docs site) shows it as is."""
    lines = ["# Fault battery", "", "`benchmarks/fault_battery.py`: every input through the real CLI "
             "(subprocesses) or on a copy of a real tiny export.", "",
             "| | count |", "|---|---:|", *[f"| {k} | {v} |" for k, v in summary.items()], "",
             f"Environment: {env}", "", "| group | input | outcome | first error line |", "|---|---|---|---|"]
    lines += [f"| {r['group']} | {r['input']} | {r['kind']} | "
              f"{_code(r['error'][:140].replace('|', '/'))} |" for r in rows]
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    return f"`{text.replace('`', chr(39))}`" if text else ""


def main() -> None:
    load = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="snnet-faults-") as tmp:
        rows = run_battery(Path(tmp))
    summary = summarise(rows)
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
           "load_average_before": load, "load_average_after": [round(v, 2) for v in os.getloadavg()],
           "seconds": round(time.perf_counter() - t0, 1), "user_is_root": os.geteuid() == 0}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fault_battery.json").write_text(json.dumps({"summary": summary, "environment": env, "cases": rows},
                                                           indent=2) + "\n")
    (RESULTS / "fault_battery.md").write_text(render(summary, env, rows))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
