"""Meta-test protocol: adapt on support, score on query, mean and 95% CI."""

from distmeta.evaluation.adaptation import sampled_curve, score_curve
from distmeta.evaluation.protocol import EvalReport, combine, evaluate, plot_curves

__all__ = ["EvalReport", "combine", "evaluate", "plot_curves", "sampled_curve", "score_curve"]
