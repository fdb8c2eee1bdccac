"""Load a YAML config plus ``key=value`` overrides into a typed, validated :class:`DistMetaConfig`.

This module is the only place that reads YAML or command-line overrides; everything downstream
receives the plain dataclasses (or plain arguments taken from them).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from distmeta.config.origin import attach
from distmeta.config.schema import DistMetaConfig
from distmeta.config.validate import validate
from distmeta.errors import ConfigError


def load(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> DistMetaConfig:
    """Merge schema defaults, the YAML file at ``path`` and dot-list ``overrides``; validate. The
    config carries where it came from (:func:`distmeta.config.origin.origin`).

    Raises :class:`ConfigError` naming the file, key or value at fault.
    """
    base = OmegaConf.structured(DistMetaConfig)
    layers, text = [], ""
    if path is not None:
        text = _read_text(Path(path))
        layers.append(_parse_yaml(text, str(path)))
    layers.append(_parse_overrides(list(overrides)))
    merged = base
    for layer in layers:
        merged = _merge(merged, layer)
    cfg = OmegaConf.to_object(merged)
    validate(cfg)
    if path is not None:
        attach(cfg, Path(path), text)
    return cfg


def from_yaml_text(text: str, overrides: Iterable[str] = ()) -> DistMetaConfig:
    """Rebuild a config saved by :func:`to_yaml` (checkpoints carry one), plus ``overrides``."""
    merged = _merge(OmegaConf.structured(DistMetaConfig), _parse_yaml(text, "the checkpoint's config"))
    cfg = OmegaConf.to_object(_merge(merged, _parse_overrides(list(overrides))))
    validate(cfg)
    return cfg


def to_yaml(cfg: DistMetaConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_flat_dict(cfg: DistMetaConfig) -> dict[str, Any]:
    """``{"algorithm.inner_lr": 0.01, ...}``: the form MLflow params take."""
    out: dict[str, Any] = {}

    def walk(prefix: str, obj: Any) -> None:
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                walk(f"{prefix}{f.name}.", getattr(obj, f.name))
        else:
            out[prefix[:-1]] = obj

    walk("", cfg)
    return out


def _read_text(path: Path) -> str:
    hint = "give the path to a YAML file, e.g. configs/sine_maml.yaml"
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a config file ({hint})")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} ({hint})")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"cannot read {path} as a YAML text file: {exc}") from None
    return text


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's mappings keep the last of two equal keys without a word; a config must not (a
    second ``max_steps`` or a second ``trainer:`` section would silently replace the first)."""

    def construct_mapping(self, node, deep=False):
        lines: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in lines:
                raise _DuplicateKey(f"key '{key}' appears twice, on lines {lines[key]} and {key_node.start_mark.line + 1}")
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, where: str):
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as exc:
        raise ConfigError(f"{where}: {exc}; keep one") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {where} as YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping of config keys at the top level, found {type(data).__name__}")
    return OmegaConf.create(data)


def _parse_overrides(overrides: list[str]):
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. trainer.max_steps=100)")
        key = item.split("=", 1)[0]
        if _is_section(key):
            example = next(iter(_keys_under(key)), "name")
            raise ConfigError(f"override '{item}': {key} is a section; set its keys one by one (e.g. {key}.{example}=...)")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse overrides {overrides}: {exc.msg}") from None


def _merge(base, layer):
    try:
        return OmegaConf.merge(base, layer)
    except ConfigKeyError as exc:
        raise ConfigError(_unknown_key_message(exc)) from None
    except ValidationError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if exc.full_key:
            raise ConfigError(f"config key '{exc.full_key}' has the wrong type: {first_line}") from None
        raise ConfigError(
            f"config has a value of the wrong type: {first_line} (a section such as "
            "'trainer' must be a mapping of its keys, not a single value)"
        ) from None
    except OmegaConfBaseException as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"invalid config at '{exc.full_key}': {first_line}") from None


def _unknown_key_message(exc: ConfigKeyError) -> str:
    full_key = exc.full_key or str(exc.key)
    parent, _, leaf = full_key.rpartition(".")
    known = _keys_under(parent)
    hint = difflib.get_close_matches(leaf, known, n=1)
    valid_full = _keys_under_full()
    msg = f"unknown config key '{full_key}'"
    if hint:
        msg += f"; did you mean '{(parent + '.' if parent else '') + hint[0]}'?"
    else:
        close = difflib.get_close_matches(full_key, valid_full, n=1, cutoff=0.6)
        msg += f"; did you mean '{close[0]}'?" if close else f"; valid keys here: {', '.join(known)}"
    return msg


def _is_section(dotted: str) -> bool:
    node: Any = DistMetaConfig()
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(node) or not hasattr(node, part):
            return False
        node = getattr(node, part)
    return dataclasses.is_dataclass(node)


def _keys_under(parent: str) -> list[str]:
    node: Any = DistMetaConfig()
    for part in filter(None, parent.split(".")):
        node = getattr(node, part, None)
        if node is None or not dataclasses.is_dataclass(node):
            return []
    return [f.name for f in dataclasses.fields(node)]


def _keys_under_full() -> list[str]:
    return list(to_flat_dict(DistMetaConfig()).keys())
