"""Where a config came from: its file and the comment block it opens with (a run's description).
:func:`distmeta.config.load` attaches it to the config it returns; a config built otherwise
(in code, or from a checkpoint's YAML) has none."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_ATTRIBUTE = "_distmeta_origin"


@dataclass(frozen=True)
class Origin:
    path: Path
    """The YAML file, absolute."""
    header: str
    """Its leading comment lines without their ``#``: what the config is for (empty if none)."""

    @property
    def name(self) -> str:
        return self.path.stem


def header_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return "\n".join(lines).strip()


def attach(cfg, path: Path, text: str) -> None:
    setattr(cfg, _ATTRIBUTE, Origin(path.absolute(), header_comment(text)))


def origin(cfg) -> Origin | None:
    return getattr(cfg, _ATTRIBUTE, None)
