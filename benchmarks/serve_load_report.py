"""Markdown table and plot of ``benchmarks/serve_load.py``'s results (kept apart to keep that script short)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def markdown(out: dict[str, Any]) -> str:
    env, cal = out["environment"], out["calibration"]
    fixed = out["fixed"]
    acc = out["accuracy"]
    lines = [
        "# serve_load: the SLO policy vs single stitches on Triton (CPU, ONNX Runtime)", "",
        f"Folder `{out['folder']}` (served copy `{out['served_copy']}`, frontier re-benched at the served batches), "
        f"frontier {out['frontier']} with digits validation Top-1 "
        + ", ".join(f"{i}: {acc[str(i)]:.2f}%" for i in out["frontier"]) + ".",
        f"Requests of {out['images_per_request']} real digits validation images; dynamic batching up to "
        f"{out['max_batch_images']} images; queue bound {out['max_queue']} requests; {out['step_s']} s per step "
        "and server, servers visited in turn within each step (interleaved).",
        f"Calibration (stitch {fixed[0]} alone, closed loop): capacity **{cal['capacity_rps']} req/s**, unloaded "
        f"p50 {cal['unloaded_p50_ms']} ms (profiled compute {cal['profiled_compute_p50_ms']} ms, so the policy reserves "
        f"{cal['overhead_ms']} ms of overhead per request); **SLO {out['slo_ms']} ms** ({out['slo_factor']} x the "
        "unloaded p50).",
        f"Environment: {env['cpu_count']} CPUs shared with other work, load average before {env['load_average']['before']}"
        f", after {env['load_average']['after']}; FP32 matmul peak {env['matmul_peak_gflops']} GFLOP/s at "
        f"{env['ort_threads_per_server']} thread(s); ONNX Runtime {env['onnxruntime']}, PyTriton {env['pytriton']}, "
        f"{env['ort_threads_per_server']} ORT thread per server. No GPU, no TensorRT: not measured. The policy "
        "server runs with `-vv` (one DEBUG line per batch, its decisions in serve_load_batches.json); the "
        "single-stitch servers do not.", "",
        "Effective accuracy = images answered correctly within the SLO / images sent (late, refused and failed "
        "requests count as wrong). (a) the SLO policy, (b) stitch "
        f"{fixed[0]} (most accurate), (c) stitch {fixed[-1]} (fastest), (d) the best fixed stitch of each step in "
        "hindsight.", "",
        "## Per step: effective accuracy (%) and % of requests over the SLO", "",
        "| step | load (x cap.) | offered req/s | (a) eff | (a) over | (b) eff | (b) over | (c) eff | (c) over "
        "| (d) stitch | (d) eff | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    res = out["results"]
    for row in out["comparison"]:
        si = row["step"]
        a, b, c = res["policy"][si], res[f"stitch {fixed[0]}"][si], res[f"stitch {fixed[-1]}"][si]
        goal = "n/a (fastest misses)" if row["goal_met"] is None else ("met" if row["goal_met"] else "**missed**")
        lines.append(f"| {si} | {row['load_x']} | {a['offered_rps']} | {a['effective_accuracy_pct']} | "
                     f"{a['over_slo_pct']} | {b['effective_accuracy_pct']} | {b['over_slo_pct']} | "
                     f"{c['effective_accuracy_pct']} | {c['over_slo_pct']} | {row['d']} | {row['d_eff']} | {goal} |")
    lines += ["", "## Per step and server: latency, throughput, what was served", "",
              "| step | server | p50 ms | p99 ms | over SLO % | answered/sent | refused | req/s | eff. acc % | "
              "acc. of answers % | max send lag ms | images per stitch |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, steps in res.items():
        for r in steps:
            lines.append(f"| {r['step']} | {name} | {r['p50_ms']} | {r['p99_ms']} | {r['over_slo_pct']} | "
                         f"{r['answered']}/{r['sent']} | {r['refused']} | {r['throughput_rps']} | "
                         f"{r['effective_accuracy_pct']} | {r['accuracy_answered_pct']} | {r['max_send_lag_ms']} | "
                         f"{ {int(k): v for k, v in r['images_per_stitch'].items()} } |")
    met = [r["goal_met"] for r in out["comparison"] if r["goal_met"] is not None]
    lines += ["", f"Goal (at every step the fastest stitch holds: <= 1% over the SLO and effective accuracy >= "
              f"best of (b)(c)(d) - 0.5 point): met at {sum(met)} of {len(met)} such steps.", "",
              f"Server exit codes after SIGTERM: {out['exit_codes']}.", "",
              "![stitch served over time against offered load](serve_load.png)", ""]
    return "\n".join(lines)


def plot(out: dict[str, Any], timeline: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = {int(k): v for k, v in out["accuracy"].items()}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=False)
    t = [p["t"] for p in timeline if p["stitch"] is not None]
    s = [acc.get(p["stitch"], float("nan")) for p in timeline if p["stitch"] is not None]
    load = [p["load_x"] for p in timeline]
    ax1.step([p["t"] for p in timeline], load, where="post", color="tab:gray", label="offered load (x capacity)")
    ax1.set_ylabel("offered load (x capacity of stitch %d)" % out["fixed"][0])
    ax1b = ax1.twinx()
    ax1b.scatter(t, s, s=4, color="tab:blue", alpha=0.5, label="Top-1 of the stitch served")
    ax1b.set_ylabel("Top-1 of the stitch served (%)")
    ax1.set_xlabel("time (s) of the policy server's share of the run")
    ax1.set_title(f"SLO policy: stitch served vs offered load (SLO {out['slo_ms']} ms)")
    steps = list(range(len(out["steps"])))
    for name, rows in out["results"].items():
        ax2.plot(steps, [r["effective_accuracy_pct"] for r in rows], marker="o" if name == "policy" else ".",
                 linewidth=2.5 if name == "policy" else 1, label=name)
    ax2.set_xticks(steps, [f"{x}x" for x in out["steps"]])
    ax2.set_xlabel("step (offered load)")
    ax2.set_ylabel("effective accuracy (%)")
    ax2.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
