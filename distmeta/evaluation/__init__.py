"""Meta-test protocol: adapt on support, score on query, mean and 95% CI."""
from distmeta.evaluation.adaptation import adaptation_curve
from distmeta.evaluation.protocol import EvalReport, evaluate_sine, plot_curves

__all__ = ["EvalReport", "adaptation_curve", "evaluate_sine", "plot_curves"]
