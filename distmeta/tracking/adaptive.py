"""The served model: an MLflow pyfunc that adapts, as a meta-learned model is used. Its input is
a batch of tasks' support sets and query inputs, its output their query predictions after the
algorithm's inner loop on each support set, with the run's inner-loop settings inside it."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow.pyfunc
import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec
from torch import nn

from distmeta.algorithms import Algorithm
from distmeta.algorithms.adapted import adapted_outputs
from distmeta.logs import quiet_model_logging

INPUTS = ("support_x", "support_y", "query_x")


@dataclass(frozen=True)
class Served:
    """What the adaptive model is made of: the algorithm (its inner LR and loss), the inner steps
    it takes by default, an input example (one task, as numpy arrays), and the registered model
    name to register it under (empty: not registered)."""

    algorithm: Algorithm
    steps: int
    example: dict[str, np.ndarray]
    register_as: str = ""


class AdaptiveModel(mlflow.pyfunc.PythonModel):
    """``predict({"support_x": [T, S, ...], "support_y": [T, S, ...], "query_x": [T, Q, ...]},
    params={"steps": n})``: ``[T, Q, ...]`` query outputs (regression values, or class logits)
    after ``n`` inner steps on each task's support set (default: the run's training steps)."""

    # MLflow's own switch (its ChatModel's) for no type-hint validation: the input schema is the
    # explicit tensor signature (:func:`signature`); without it, MLflow warns at this class.
    _skip_type_hint_validation = True

    def __init__(self, algorithm: Algorithm, model: nn.Module, steps: int):
        self.algorithm, self.model, self.steps = algorithm, model, steps

    def predict(self, context, model_input, params=None):
        steps = int((params or {}).get("steps", self.steps))
        sx, sy, qx = (torch.as_tensor(np.asarray(model_input[k])) for k in INPUTS)
        return adapted_outputs(self.algorithm, self.model, sx, sy, qx, steps).numpy()


def signature(served: Served, outputs: np.ndarray) -> ModelSignature:
    """Tensors with any number of tasks and of support and query rows; ``steps`` a parameter."""

    def spec(array: np.ndarray, name: str | None = None) -> TensorSpec:
        return TensorSpec(array.dtype, (-1, -1, *array.shape[2:]), name)

    inputs = Schema([spec(served.example[k], k) for k in INPUTS])
    return ModelSignature(inputs, Schema([spec(outputs)]), ParamSchema([ParamSpec("steps", "long", served.steps)]))


def log_adaptive(model: nn.Module, served: Served, code_paths: list[str], requirements: list[str]):
    """Log the adaptive model of the active run as ``adaptive_model`` (registered if asked)."""
    python_model = AdaptiveModel(served.algorithm, model, served.steps)
    outputs = python_model.predict(None, served.example)
    with quiet_model_logging():
        return mlflow.pyfunc.log_model(
            name="adaptive_model",
            python_model=python_model,
            code_paths=code_paths,
            pip_requirements=requirements,
            signature=signature(served, outputs),
            input_example=(served.example, {"steps": served.steps}),
            registered_model_name=served.register_as or None,
        )
