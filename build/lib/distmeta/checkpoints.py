"""Finding and reading distmeta checkpoints (Lightning ``.ckpt`` files with a ``distmeta`` entry)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from distmeta.errors import UserError

LAST, BEST = "last.ckpt", "best.ckpt"
FORMAT = 2
"""Checkpoint layout version. 2: Conv4 without convolution biases (format 1 had them; the batch
normalisation that follows cancels them, so dropping them gives the same network)."""
_CONV_BIAS = re.compile(r"(^|\.)body\.\d+\.0\.bias$")


def find_resume(resume: str, root: str | Path) -> Path:
    """``last`` means the newest ``<root>/<run id>/last.ckpt``; anything else is a path."""
    if resume == "last":
        candidates = sorted(Path(root).glob(f"*/{LAST}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UserError(f"--resume last: no {LAST} under checkpoint.dir={root}; give a checkpoint path instead")
        return candidates[-1]
    return find(resume)


def find(given: str | Path) -> Path:
    """A checkpoint file, or a run's folder holding ``last.ckpt``."""
    path = Path(given)
    if path.is_dir():
        if not (path / LAST).is_file():
            raise UserError(f"{given} is a folder without a {LAST}; give a checkpoint file or a run's checkpoint folder")
        return path / LAST
    if not path.is_file():
        raise UserError(f"checkpoint not found: {given} (give a .ckpt file or a run's checkpoint folder)")
    return path


def read(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers, no pickled code)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's refusal of anything but tensors and plain containers
        raise UserError(f"refused checkpoint {path}: {_refusal(str(exc))}") from None
    except Exception as exc:  # truncated, corrupt or not a torch file at all
        raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}: {_plain(str(exc))[:200]}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("distmeta"), dict) or "state_dict" not in ckpt:
        raise UserError(f"{path} is not a distmeta checkpoint (no 'distmeta' metadata or state_dict)")
    missing = [k for k in METADATA if k not in ckpt["distmeta"]]
    if missing:
        raise UserError(f"{path} is not a complete distmeta checkpoint: its metadata lacks {', '.join(missing)}")
    return ckpt


METADATA = ("run_id", "tracking_uri", "config_yaml")
"""What a checkpoint's ``distmeta`` entry must hold: its run, and the config that made it."""


def _plain(text: str) -> str:
    """The first line of a message, without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines()[0] if text.strip() else ""


def _refusal(text: str) -> str:
    """Torch's weights-only refusal, as what was refused (its hint on loading the file anyway is
    advice distmeta never takes: a checkpoint that holds code is not loaded)."""
    found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text)
    what = f"it holds pickled code or objects ({found.group(1)})" if found else "it holds more than tensors and plain values"
    return what + "; distmeta loads only checkpoints of tensors and plain values"


def model_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The meta-model's weights (the learner stores them under ``model.``), in this version's
    layout: a format-1 Conv4 checkpoint loses its convolution biases (exactly the same network)."""
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if _format1_conv4(ckpt):
        state = {k: v for k, v in state.items() if not _CONV_BIAS.search(k)}
    return state


def _format1_conv4(ckpt: dict[str, Any]) -> bool:
    meta = ckpt["distmeta"]
    if meta.get("format", 1) >= 2:
        return False
    saved = yaml.safe_load(meta.get("config_yaml", "")) or {}
    return (saved.get("model") or {}).get("name") == "conv4"


def resumable(ckpt: dict[str, Any], path: Path) -> None:
    """Refuse to resume from a checkpoint whose layout this version cannot continue."""
    if _format1_conv4(ckpt):
        raise UserError(
            f"{path} is a format-1 Conv4 checkpoint (convolutions with biases); this version's Conv4 has "
            "none, so its optimizer state cannot continue. `distmeta eval --checkpoint` still reads it"
        )
