"""The evaluation report's keys, defined once: flat ones in the report and its JSON
(``mse.k10.steps1.mean``), and in MLflow the adaptation curves as series (``test/mse.k10.mean``,
whose step is the number of inner steps)."""

EVAL_PREFIX = "test/"
"""The MLflow prefix of the curves: the meta-test protocol (``test/<family>/`` for a mixture's
families). It sorts after ``meta/``, so a run's learning curves come first in MLflow's charts."""

STATS = ("mean", "ci95")


def eval_key(score: str, shots: int, steps: int, stat: str) -> str:
    """``mse.k10.steps1.mean`` / ``acc.k1.steps10.ci95``: the eval report's keys."""
    return f"{score}.k{shots}.steps{steps}.{stat}"


def curve_key(score: str, shots: int, stat: str) -> str:
    """``mse.k10.mean``: one adaptation curve's series (MLflow prefixes it with :data:`EVAL_PREFIX`)."""
    return f"{score}.k{shots}.{stat}"
