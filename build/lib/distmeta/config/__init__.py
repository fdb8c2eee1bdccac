"""Typed configuration: the schema and the loader (the only code that reads YAML or overrides)."""

from distmeta.config.loader import from_yaml_text, load, to_flat_dict, to_yaml, validate
from distmeta.config.schema import (
    AlgorithmConfig,
    CheckpointConfig,
    ClusterConfig,
    DistMetaConfig,
    EvaluationConfig,
    ModelConfig,
    TasksConfig,
    TrackingConfig,
    TrainerConfig,
)

__all__ = [
    "AlgorithmConfig",
    "CheckpointConfig",
    "ClusterConfig",
    "DistMetaConfig",
    "EvaluationConfig",
    "ModelConfig",
    "TasksConfig",
    "TrackingConfig",
    "TrainerConfig",
    "from_yaml_text",
    "load",
    "to_flat_dict",
    "to_yaml",
    "validate",
]
