"""Every change of form of what crosses between the learner and its shards, in one place.

Out: the learner's parameters -> one flat CPU tensor (what the learner keeps, e.g. in a
pipelined checkpoint) -> a NumPy array (NumPy arrays serialize without pickling a tensor) -> (Ray calls: inline or one object-store put, :func:`distmeta.shard.ray_group.share`) -> on the worker a
tensor copy on its device -> a parameter dict of views. Back: per family, the gradient dict ->
one flat CPU tensor; on the wire a result's family gradients travel as one stacked array (Ray
hands it over as a single buffer; a dict of tensors paid torch's own pickling per call); on the
learner the aggregated flat gradient -> per-parameter views for ``p.grad``.

:class:`Traffic` counts what the learner's process sends and receives of it, per group.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from distmeta.models import flatten, unflatten

Params = dict[str, torch.Tensor]


def weights_out(params: Params) -> torch.Tensor:
    """The learner's parameters as one flat CPU tensor, in parameter order."""
    return flatten({k: p.detach() for k, p in params.items()}).cpu()


def as_array(weights: torch.Tensor) -> np.ndarray:
    """What travels to the shards: the flat weights as an array (no copy)."""
    return weights.detach().cpu().numpy()


def weights_in(weights: np.ndarray | torch.Tensor, template: Params, device: torch.device) -> Params:
    """On the worker: the step's weights as parameter views on ``device``. Object-store arrays are
    read-only, so they are copied (tiny next to the step's compute)."""
    flat = torch.from_numpy(np.array(weights)) if isinstance(weights, np.ndarray) else weights
    return unflatten(flat.to(device), template)


def grads_out(grads: Params) -> torch.Tensor:
    """A family's gradient sum as one flat CPU tensor, in parameter order."""
    return flatten(grads).cpu()


def grads_in(flat: torch.Tensor, params: Params) -> Params:
    """On the learner: the aggregated flat gradient as views shaped like ``params``."""
    return unflatten(flat.to(next(iter(params.values())).device), params)


def pack_grads(grads: dict[str, torch.Tensor]) -> tuple[tuple[str, ...], np.ndarray | None]:
    """A result's family gradients for pickling: the family names and one stacked array."""
    return tuple(grads), (np.stack([g.detach().cpu().numpy() for g in grads.values()]) if grads else None)


def unpack_grads(families: tuple[str, ...], packed: np.ndarray | None) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack_grads`; one copy (object-store buffers are read-only, and the
    learner adds into its own sums)."""
    rows = torch.from_numpy(np.array(packed)) if packed is not None else ()
    return dict(zip(families, rows))


@dataclass
class Traffic:
    """The learner's payload bytes through a shard group since it started: the arrays and tensors
    it sends (weights: once per object-store put, else once per call or channel request; a
    replica state) and receives (gradient sums, norm statistics, replica states). Metric scalars,
    plans and step numbers (tens of bytes a shard) are not counted."""

    sent: int = 0
    received: int = 0


def nbytes(value) -> int:
    """The bytes of every array and tensor in ``value`` (a message: dataclasses, dicts, lists and
    tuples are walked)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0
