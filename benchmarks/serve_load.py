"""Does ``snnet-export serve``'s SLO policy beat serving any single stitch under changing load?

One run, on the digits demo folder (real validation accuracy, real digits images in every request):

* servers, all started at once on loopback: ``(a)`` the SLO policy and one ``--stitch ID`` server
  per frontier stitch (at most ``--fixed`` of them, always the most accurate ``(b)`` and the
  fastest ``(c)``); ``(d)`` is, per step, the best of the fixed ones in hindsight;
* calibration: the most accurate stitch's capacity (requests/s, closed loop, ``--concurrency`` in
  flight) and its unloaded latency; the SLO is ``--slo-factor`` x that latency unless ``--slo-ms``;
* open-loop Poisson arrivals (tritonclient's gRPC asyncio API) stepping through ``--steps``
  multiples of that capacity (0.5x up to 4x and back down); every step visits every server in
  turn for ``--step-s`` seconds (interleaved, so machine noise spreads over all of them);
* per step and server: p50/p99 latency (from the *scheduled* send time: open loop), % of requests
  over the SLO (late, refused or failed), throughput, effective accuracy (images answered
  correctly within the SLO / images sent), and the stitches served.

    flock /work/bench.lock .venv/bin/python benchmarks/serve_load.py

Writes benchmarks/results/serve_load.json, .md and serve_load.png.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load_folder import ROOT, demo_folder  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT / "tests"))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, default=None, help="engine folder (default: the digits demo's FP32)")
    p.add_argument("--images", type=int, default=8, help="images per request")
    p.add_argument("--steps", default="0.5,1,2,3,4,3,2,1,0.5", help="offered load, x capacity of the best stitch")
    p.add_argument("--step-s", type=float, default=8.0)
    p.add_argument("--fixed", type=int, default=4, help="single-stitch servers (frontier stitches)")
    p.add_argument("--slo-ms", type=float, default=None)
    p.add_argument("--slo-factor", type=float, default=8.0)
    p.add_argument("--max-batch-requests", type=int, default=8, help="batcher limit, in requests")
    p.add_argument("--max-queue", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per server")
    p.add_argument("--overhead-ms", type=float, default=None,
                   help="policy's per-request overhead (default: measured, unloaded round trip - profiled compute)")
    p.add_argument("--out", type=Path, default=RESULTS / "serve_load")
    return p.parse_args()


def prepare(src: Path, work: Path, batches: list[int], threads: int) -> tuple[Path, list[int], dict[int, float]]:
    """Copy ``src`` to ``work`` and bench its frontier there at the served batches and threads."""
    from snnet_export.bench.measure import profile_from_engines
    from snnet_export.runtime import Selector

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("profile.*.json", "*.engine", "report.*", "*.png"))
    shutil.copy(next(src.glob("profile.*ort*.json"), None) or next(src.glob("profile.*.json")), work)
    with Selector(work, resident="none") as sel:
        frontier = list(sel.frontier)
    profile_from_engines(work, backend="ort", batches=batches, configs=frontier, threads=threads, runs=10,
                         min_seconds=0.3, rounds=3, progress=False, replace=True)
    with Selector(work, resident="none") as sel:
        acc = {i: sel.candidates[i].accuracy for i in sel.candidates}
        frontier = sorted(sel.frontier, key=lambda i: acc[i])
    return work, frontier, acc


def digits(chw: tuple[int, ...], k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The digits validation images as requests of ``k`` images, with their labels."""
    from snnet_export.train.data import digits_arrays, digits_tensors

    _, _, x_va, y_va = digits_arrays()
    x = digits_tensors(x_va, chw).numpy().astype(np.float32)
    n = len(x) // k * k
    return ([x[i:i + k] for i in range(0, n, k)], [np.asarray(y_va[i:i + k]) for i in range(0, n, k)])


async def _one(client, inp_mod, x: np.ndarray, t_sched: float, loop, params=None) -> dict:
    inp = inp_mod.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    t_send = loop.time()
    try:
        res = await client.infer("snnet", [inp], parameters=params)
        return {"t": t_sched, "lag": t_send - t_sched, "lat": loop.time() - t_sched,
                "pred": res.as_numpy("logits").argmax(1), "stitch": res.as_numpy("stitch").reshape(-1)}
    except Exception as exc:  # noqa: BLE001 - counted as a miss, by kind
        kind = "refused" if "queue size" in str(exc).lower() or "UNAVAILABLE" in str(exc) else "error"
        return {"t": t_sched, "lag": t_send - t_sched, "lat": loop.time() - t_sched, "error": kind,
                "msg": str(exc)[:200]}


async def _open_loop(url: str, rate: float, seconds: float, xs, ys, seed: int) -> list[dict]:
    import tritonclient.grpc.aio as aio

    client = aio.InferenceServerClient(url)
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(seed)
    t = t0 = loop.time() + 0.02
    tasks = []
    while True:
        t += rng.exponential(1.0 / rate)
        if t >= t0 + seconds:
            break
        if t > loop.time():
            await asyncio.sleep(t - loop.time())
        j = len(tasks) % len(xs)
        task = asyncio.create_task(_one(client, aio, xs[j], t, loop))
        task.labels = ys[j]  # type: ignore[attr-defined]
        tasks.append(task)
    out = await asyncio.gather(*tasks)
    for task, r in zip(tasks, out):
        r["correct"] = int((r["pred"] == task.labels).sum()) if "pred" in r else 0  # type: ignore[attr-defined]
        r["t"] -= t0
        r.pop("pred", None)
    await client.close()
    return out


async def _closed_loop(url: str, seconds: float, concurrency: int, xs) -> tuple[float, float]:
    """``(requests/s, p50 latency s)`` with ``concurrency`` requests always in flight."""
    import tritonclient.grpc.aio as aio

    client = aio.InferenceServerClient(url)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    lats: list[float] = []

    async def worker(w: int) -> None:
        j = w
        while loop.time() < end:
            r = await _one(client, aio, xs[j % len(xs)], loop.time(), loop)
            if "error" not in r:
                lats.append(r["lat"])
            j += concurrency

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    await client.close()
    return len(lats) / seconds, float(np.median(lats))


def profiled_p50(folder: Path, stitch: int, batch: int) -> float:
    """The re-benched profile's median compute time (ms) of ``stitch`` at ``batch``."""
    from snnet_export.engine_folder.profile import find_profile

    prof = find_profile(folder, "ort")
    assert prof is not None
    return float(next(r["latency_ms"]["p50"] for r in prof["stitches"] if r["id"] == stitch and r["batch"] == batch))


def calibrate(url: str, xs, concurrency: int) -> dict:
    asyncio.run(_closed_loop(url, 1.0, 1, xs))  # warm-up
    _, unloaded = asyncio.run(_closed_loop(url, 2.0, 1, xs))
    capacity, loaded = asyncio.run(_closed_loop(url, 4.0, concurrency, xs))
    return {"capacity_rps": round(capacity, 1), "unloaded_p50_ms": round(unloaded * 1e3, 2),
            "saturated_p50_ms": round(loaded * 1e3, 2)}


def summarise(rows: list[dict], rate: float, seconds: float, slo_s: float, k: int, acc: dict[int, float]) -> dict:
    ok = [r for r in rows if "error" not in r]
    lat = np.array([r["lat"] for r in ok]) * 1e3 if ok else np.array([np.nan])
    within = [r for r in ok if r["lat"] <= slo_s]
    served: dict[int, int] = {}
    for r in ok:
        for s in r["stitch"].tolist():
            served[int(s)] = served.get(int(s), 0) + 1
    n = max(len(rows), 1)
    return {"offered_rps": round(rate, 1), "sent": len(rows), "answered": len(ok),
            "refused": sum(r.get("error") == "refused" for r in rows),
            "errors": sum(r.get("error") == "error" for r in rows),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "over_slo_pct": round(100.0 * (len(rows) - len(within)) / n, 2),
            "throughput_rps": round(len(ok) / seconds, 1),
            "effective_accuracy_pct": round(100.0 * sum(r["correct"] for r in within) / (n * k), 2),
            "accuracy_answered_pct": round(100.0 * sum(r["correct"] for r in ok) / max(len(ok) * k, 1), 2),
            "max_send_lag_ms": round(max((r["lag"] for r in rows), default=0.0) * 1e3, 2),
            "images_per_stitch": dict(sorted(served.items()))}


def start_servers(folder: Path, names: dict[str, int | None], args: argparse.Namespace, slo_ms: float,
                  max_batch: int, logs: Path, overhead_ms: float = 1.0, verbose: int = 0) -> dict:
    from serve_helpers import Server

    common = ["--max-batch", str(max_batch), "--max-queue", str(args.max_queue), "--max-queue-delay-ms", "1",
              "--slo-ms", f"{slo_ms:.3f}", "--overhead-ms", f"{overhead_ms:.3f}"]
    servers = {name: Server(folder, logs / f"{name}.log", *common, *([] if sid is None else ["--stitch", str(sid)]),
                            verbose=verbose) for name, sid in names.items()}
    for s in servers.values():
        s.wait_ready(300)
    return servers


def main() -> None:
    args = parse()
    from snnet_export.bench.peak import matmul_peak
    from snnet_export.engine_folder.manifest import load_manifest

    load_before = os.getloadavg()
    src = args.folder or demo_folder()
    k = args.images
    max_batch = k * args.max_batch_requests
    batches = sorted({k, 2 * k, 4 * k, max_batch})
    work, frontier, acc = prepare(src, ROOT / "engines" / "serve-load", batches, args.threads)
    manifest = load_manifest(work)
    xs, ys = digits(tuple(manifest["input_shape"]), k)
    best, fastest = frontier[-1], frontier[0]
    between = frontier[1:-1]
    pick = between[:: max(1, len(between) // max(1, args.fixed - 2))][: max(0, args.fixed - 2)]
    fixed = sorted({best, fastest, *pick}, key=lambda i: -acc[i])
    names: dict[str, int | None] = {"policy": None, **{f"stitch {i}": i for i in fixed}}
    logs = ROOT / "engines" / "serve-load-logs"  # server logs: output, not results
    logs.mkdir(parents=True, exist_ok=True)
    # the SLO depends on the calibration, which needs a server: start (b) first, then the rest
    # the SLO and the overhead come from the calibration, on the single-stitch servers (the SLO does not
    # matter to them); then the policy server starts with both
    servers = start_servers(work, {n: i for n, i in names.items() if i is not None}, args, 1000.0, max_batch, logs)
    try:
        cal = calibrate(servers[f"stitch {best}"].grpc_url, xs, args.concurrency)
        compute_ms = profiled_p50(work, best, k)
        overhead_ms = args.overhead_ms if args.overhead_ms is not None else max(1.0, cal["unloaded_p50_ms"] - compute_ms)
        cal.update(profiled_compute_p50_ms=round(compute_ms, 2), overhead_ms=round(overhead_ms, 2))
        slo_ms = args.slo_ms or round(args.slo_factor * cal["unloaded_p50_ms"], 1)
        # -vv: the policy logs each batch's decision (read back into serve_load_batches.json)
        servers.update(start_servers(work, {"policy": None}, args, slo_ms, max_batch, logs, overhead_ms, verbose=2))
    except BaseException:
        for s in servers.values():
            s.stop()
        raise
    servers = {n: servers[n] for n in names}
    try:
        peak = matmul_peak(args.threads)
        for s in servers.values():
            asyncio.run(_closed_loop(s.grpc_url, 1.0, 2, xs))  # warm every server up
        steps = [float(v) for v in args.steps.split(",")]
        results: dict[str, list[dict]] = {n: [] for n in names}
        timeline: list[dict] = []
        clock = 0.0
        for si, mult in enumerate(steps):
            rate = mult * cal["capacity_rps"]
            order = list(names)[si % len(names):] + list(names)[:si % len(names)]
            for name in order:
                rows = asyncio.run(_open_loop(servers[name].grpc_url, rate, args.step_s, xs, ys, seed=si))
                results[name].append({"step": si, "load_x": mult, **summarise(rows, rate, args.step_s, slo_ms / 1e3,
                                                                               k, acc)})
                if name == "policy":
                    timeline += [{"t": round(clock + r["t"], 4), "load_x": mult,
                                  "stitch": int(r["stitch"][0]) if "stitch" in r else None,
                                  "lat_ms": round(r["lat"] * 1e3, 2), "error": r.get("error")} for r in rows]
            clock += args.step_s
        load_after = os.getloadavg()
    finally:
        codes = {n: s.stop() for n, s in servers.items()}
        batches = policy_batches(logs / "policy.log")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.out.parent / (args.out.name + "_batches.json")).write_text(json.dumps(batches))
    write(args, src, work, frontier, acc, fixed, cal, slo_ms, peak, results, timeline, steps,
          {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]}, codes, k, max_batch)


def policy_batches(log: Path) -> list[dict]:
    """The policy server's per-batch decisions (its DEBUG ``batch t=...`` lines), in order."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        at = line.find("batch t=")
        if at >= 0:
            fields = dict(kv.split("=", 1) for kv in line[at + 6:].split())
            out.append({k: float(v) if k != "stitch" and k != "items" else int(v) for k, v in fields.items()})
    return out


def compare(results: dict[str, list[dict]], fixed: list[int], steps: list[float]) -> list[dict]:
    """Per step: (a) vs (b) best-accuracy stitch, (c) fastest, (d) best fixed in hindsight; the goal check."""
    best, fastest = f"stitch {fixed[0]}", f"stitch {fixed[-1]}"
    rows = []
    for si, mult in enumerate(steps):
        a = results["policy"][si]
        fixed_rows = {n: results[n][si] for n in results if n != "policy"}
        d_name = max(fixed_rows, key=lambda n: fixed_rows[n]["effective_accuracy_pct"])
        c_holds = fixed_rows[fastest]["over_slo_pct"] <= 1.0
        target = max(fixed_rows[best]["effective_accuracy_pct"], fixed_rows[fastest]["effective_accuracy_pct"],
                     fixed_rows[d_name]["effective_accuracy_pct"]) - 0.5
        rows.append({"step": si, "load_x": mult, "fastest_holds": c_holds, "d": d_name,
                     "a_eff": a["effective_accuracy_pct"], "b_eff": fixed_rows[best]["effective_accuracy_pct"],
                     "c_eff": fixed_rows[fastest]["effective_accuracy_pct"],
                     "d_eff": fixed_rows[d_name]["effective_accuracy_pct"], "a_over": a["over_slo_pct"],
                     "goal_met": None if not c_holds else bool(a["over_slo_pct"] <= 1.0 and
                                                                a["effective_accuracy_pct"] >= target)})
    return rows


def write(args, src, work, frontier, acc, fixed, cal, slo_ms, peak, results, timeline, steps, load, codes, k,
          max_batch) -> None:
    import onnxruntime
    import tritonclient

    rows = compare(results, fixed, steps)
    env = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
           "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
           "tritonclient": getattr(tritonclient, "__version__", "?"), "pytriton": _version("nvidia-pytriton"),
           "load_average": load, "matmul_peak_gflops": peak["gflops"], "ort_threads_per_server": args.threads}
    out = {"folder": str(src), "served_copy": str(work.relative_to(ROOT)), "frontier": frontier,
           "accuracy": {str(i): acc[i] for i in frontier}, "fixed": fixed, "images_per_request": k,
           "max_batch_images": max_batch, "max_queue": args.max_queue, "step_s": args.step_s,
           "calibration": cal, "slo_ms": slo_ms, "slo_factor": args.slo_factor, "steps": steps, "results": results, "comparison": rows,
           "exit_codes": codes, "environment": env}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1, default=str))
    (args.out.parent / (args.out.name + "_timeline.json")).write_text(json.dumps(timeline))
    from serve_load_report import markdown, plot

    args.out.with_suffix(".md").write_text(markdown(out))
    plot(out, timeline, args.out.with_suffix(".png"))
    print(args.out.with_suffix(".md").read_text())


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()
