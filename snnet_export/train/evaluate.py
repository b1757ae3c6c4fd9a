"""Evaluation: Top-1/Top-5/loss of every stitch configuration, as resumable JSON lines.

:func:`evaluate_configs` appends one line per configuration as it finishes::

    {"cfg_id": 3, "path": "T[0..0] -> S[0..11]", "acc1": 91.94, "acc5": 99.72, "loss": 0.27,
     "flops": 5187744, "params": 70218}

accuracies in percent (like the published tables), ``loss`` the mean cross-entropy, ``flops`` and
``params`` in the published convention (:mod:`snnet_export.model.flops`). A second run skips the ids
already in the file. :func:`load_accuracy_table` reads such a file, or the published TSV table, as
``{cfg_id: {"acc1", "acc5", "loss"}}`` (what the exporter writes into the manifest).

Importing this module is cheap: torch is imported by the functions that run models.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError

log = logging.getLogger(__name__)

RECORD_KEYS = ("cfg_id", "acc1", "acc5", "loss", "flops", "params")


def evaluate_config(snnet: Any, cfg_id: int, loader: Any, device: Any = "cpu") -> dict[str, float]:
    """Top-1, Top-5 (percent) and mean cross-entropy of configuration ``cfg_id`` over ``loader``."""
    import torch
    import torch.nn.functional as F

    was_training = snnet.training
    snnet.eval()
    correct1 = correct5 = 0
    loss_sum = 0.0
    n = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = snnet(x, cfg_id).float()  # [B, classes]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # [B, k]
            hits = top == y[:, None]
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            n += len(y)
    snnet.train(was_training)
    if n == 0:
        raise DataError("the evaluation set is empty")
    return {"acc1": round(100.0 * correct1 / n, 4), "acc5": round(100.0 * correct5 / n, 4),
            "loss": round(loss_sum / n, 6)}


def _text(path: Path) -> str:
    """A results file as text; a binary or unreadable file is one :class:`DataError` line."""
    if not path.is_file():
        raise DataError(f"results file {path} is not a regular file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"results file {path} is not text (not UTF-8): expected JSON lines") from None
    except OSError as exc:
        raise DataError(f"cannot read results file {path}: {exc.strerror}") from None


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines results file, dropping an unfinished last line (a crash mid-write)."""
    from ..fileio import write_bytes_atomic

    path = Path(path)
    if not path.exists():
        return []
    text = _text(path)
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        log.warning("%s: ignoring an unfinished last line (the run was interrupted)", path)
        lines = lines[:-1]
        write_bytes_atomic(path, "".join(line + "\n" for line in lines).encode())
    return [_parse_record(line, path, no) for no, line in enumerate(lines, 1) if line.strip()]


def _parse_record(line: str, path: Path, no: int) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{no}: not valid JSON ({exc.msg}); each line must be one object like "
                        '{"cfg_id": 3, "acc1": 79.0, "acc5": 94.1, "loss": 0.9}') from None
    if not isinstance(rec, dict):
        raise DataError(f"{path}:{no}: expected a JSON object, got {type(rec).__name__}")
    if "cfg_id" not in rec and "id" in rec:
        rec["cfg_id"] = rec["id"]
    cfg_id = rec.get("cfg_id")
    if isinstance(cfg_id, bool) or not isinstance(cfg_id, int) or cfg_id < 0:
        raise DataError(f"{path}:{no}: 'cfg_id' must be a non-negative integer, got {cfg_id!r}")
    for key in ("acc1", "acc5", "loss"):
        value = rec.get(key)
        if key == "acc1" and value is None:
            raise DataError(f"{path}:{no}: missing 'acc1' (Top-1 accuracy in percent)")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise DataError(f"{path}:{no}: '{key}' must be a finite number, got {value!r}")
    if not 0 <= rec["acc1"] <= 100 or not 0 <= (rec.get("acc5") or 0) <= 100:
        raise DataError(f"{path}:{no}: accuracies must be percentages in [0, 100], got "
                        f"acc1={rec['acc1']!r} acc5={rec.get('acc5')!r}")
    return rec


def _table_from_tsv(path: Path) -> dict[int, dict[str, float | None]]:
    import io

    rows = list(csv.DictReader(io.StringIO(_text(path), newline=""), delimiter="\t"))
    if not rows or "cfg_id" not in rows[0] or "Top1" not in rows[0]:
        raise DataError(f"{path}: a TSV accuracy table needs a header with 'cfg_id' and 'Top1' columns "
                        "(the published official_deit_tsb_stitches.tsv format)")
    table: dict[int, dict[str, float | None]] = {}
    for no, row in enumerate(rows, 2):
        try:
            cfg_id, acc1 = int(row["cfg_id"]), float(row["Top1"])
        except (TypeError, ValueError):
            raise DataError(f"{path}:{no}: cfg_id {row.get('cfg_id')!r} / Top1 {row.get('Top1')!r} "
                            "are not numbers") from None
        if cfg_id in table:
            raise DataError(f"{path}:{no}: cfg_id {cfg_id} appears twice")
        table[cfg_id] = {"acc1": acc1, "acc5": None, "loss": None}
    return table


def load_accuracy_table(path: str | Path) -> dict[int, dict[str, float | None]]:
    """Read a results file as ``{cfg_id: {"acc1", "acc5", "loss"}}`` (missing values are ``None``).

    Accepts the JSON lines :func:`evaluate_configs` writes (``id`` is accepted for ``cfg_id``) and
    the published tab-separated table (``cfg_id`` and ``Top1`` columns).

    Raises:
        DataError: the file is missing, empty, a line is malformed, or an id appears twice.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"accuracy table {path} does not exist: run `snnet-export eval` to make one")
    if path.suffix.lower() in (".tsv", ".txt") or _text(path)[:6] == "cfg_id":
        table = _table_from_tsv(path)
    else:
        table = {}
        lines = _text(path).splitlines()
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            rec = _parse_record(line, path, no)
            if rec["cfg_id"] in table:
                raise DataError(f"{path}:{no}: cfg_id {rec['cfg_id']} appears twice; keep one line per id")
            table[rec["cfg_id"]] = {k: (None if rec.get(k) is None else float(rec[k])) for k in ("acc1", "acc5", "loss")}
    if not table:
        raise DataError(f"accuracy table {path} is empty")
    return dict(sorted(table.items()))


def evaluate_configs(family: Any, checkpoint: str | Path, data: str | Path, out_jsonl: str | Path,
                     configs: str | Iterable[int] | None = None, *, batch_size: int = 256,
                     device: str | None = None, workers: int = 0, progress: bool = False) -> list[dict[str, Any]]:
    """Evaluate configurations of ``family`` (weights from ``checkpoint``) on ``data``'s val set.

    Args:
        family: registered name, YAML path or spec.
        checkpoint: SN-Net checkpoint in the published layout (loaded strictly).
        data: ``"digits"`` or an image folder with ``train/`` and ``val/``.
        out_jsonl: results file; one line is appended (and flushed) per finished configuration,
            ids already in it are skipped.
        configs: ``"0,3,10-20"``, a list of ids, or ``None`` for every configuration.

    Returns:
        The records of the selected ids (read back and new), sorted by id.
    """
    import torch

    from .data import eval_loader, load_data
    from ..model.flops import count_flops, count_params
    from ..progress import progress_bar
    from ..model.snnet import load_checkpoint, snnet_from_family
    from ..selection import select_ids

    from .distributed import check_torch_device

    device = check_torch_device(device) or ("cuda" if torch.cuda.is_available() else "cpu")
    snnet = snnet_from_family(family, device=device)
    ids = select_ids(configs, len(snnet.configs), where=f"family {snnet.family.name}")
    out_jsonl = Path(out_jsonl)
    from ..fileio import check_writable

    check_writable(out_jsonl, "results file", DataError, folder=False)
    done = {r["cfg_id"]: r for r in read_results(out_jsonl)}
    todo = [i for i in ids if i not in done]
    if done:
        log.info("%s: %d of %d selected configurations already evaluated", out_jsonl,
                 len(ids) - len(todo), len(ids))
    if todo:
        load_checkpoint(snnet, checkpoint)
        loader = eval_loader(load_data(data, snnet).val, batch_size, workers)
        out_jsonl.parent.mkdir(parents=True, exist_ok=True)
        with out_jsonl.open("a") as f:
            for cfg_id in progress_bar(todo, "eval", unit="cfg", disable=not progress):
                cfg = snnet.config(cfg_id)
                rec = {"cfg_id": cfg_id, "path": snnet.describe(cfg),
                       **evaluate_config(snnet, cfg_id, loader, device),
                       "flops": count_flops(snnet, cfg), "params": count_params(snnet, cfg)}
                f.write(json.dumps(rec) + "\n")
                f.flush()
                done[cfg_id] = rec
                log.debug("cfg %d: acc1 %.2f", cfg_id, rec["acc1"])
    return [done[i] for i in ids]


BETWEEN_TOLERANCE = 1.0  # percentage points


def between_anchors(acc1: float, front_acc1: float, end_acc1: float,
                    tolerance: float = BETWEEN_TOLERANCE) -> tuple[bool, bool]:
    """Whether a stitch's Top-1 lies between its two anchors' Top-1.

    Returns:
        ``(within tolerance of [min, max] of the anchors, strictly between them)``.
    """
    lo, hi = sorted((front_acc1, end_acc1))
    return lo - tolerance <= acc1 <= hi + tolerance, lo < acc1 < hi
