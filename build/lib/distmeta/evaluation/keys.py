"""The evaluation report's metric keys (``eval/`` prefixed in MLflow), defined once."""

EVAL_PREFIX = "eval/"


def eval_key(score: str, shots: int, steps: int, stat: str) -> str:
    """``mse.k10.steps1.mean`` / ``acc.k1.steps10.ci95``: the eval report's keys (``eval/`` prefixed in MLflow)."""
    return f"{score}.k{shots}.steps{steps}.{stat}"
