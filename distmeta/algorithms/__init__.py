"""Meta-learning algorithms as pure torch.func code (no ray/mlflow/lightning/omegaconf), and their registry."""

from __future__ import annotations

from distmeta.algorithms.anil import ANIL
from distmeta.algorithms.base import Algorithm, Mode, Options, Params, forward
from distmeta.algorithms.batching import PATHS, MetaGradient, meta_grad, meta_grad_grouped, meta_grad_loop
from distmeta.algorithms.cavia import CAVIA
from distmeta.algorithms.gradient import MAML, GradientAdaptation, InnerLoop
from distmeta.algorithms.losses import LOSSES, Loss, accuracy, cross_entropy, mse
from distmeta.algorithms.metasgd import MetaSGD, MetaSGDModel
from distmeta.algorithms.mmaml import MMAML
from distmeta.algorithms.protonet import ProtoNet
from distmeta.algorithms.registry import ALGORITHMS, AlgorithmKind, algorithm_kind, build, register
from distmeta.algorithms.reptile import Reptile
from distmeta.algorithms.rl import PolicyMAML, PolicyProMP

register("maml", MAML)
register("fomaml", MAML, first_order=True)
register("reptile", Reptile)
register("anil", ANIL)
register("metasgd", MetaSGD)
register("protonet", ProtoNet)
register("cavia", CAVIA)
register("mmaml", MMAML)
register("maml_rl", PolicyMAML, section="rl")
register("fomaml_rl", PolicyMAML, section="rl", first_order=True)
register("promp_rl", PolicyProMP, section="rl")
register("pretrain_rl", PolicyMAML, section="rl", steps=0)  # the MAML paper's baseline: joint training, fine-tuned at test

__all__ = [
    "ALGORITHMS", "ANIL", "Algorithm", "CAVIA", "AlgorithmKind", "GradientAdaptation", "InnerLoop", "LOSSES", "Loss", "MAML", "MMAML",
    "MetaGradient", "MetaSGD", "MetaSGDModel", "Mode", "Options", "PATHS", "Params", "PolicyMAML", "PolicyProMP", "ProtoNet", "Reptile", "accuracy",
    "algorithm_kind", "build", "cross_entropy", "forward", "meta_grad", "meta_grad_grouped", "meta_grad_loop", "mse", "register",
]  # fmt: skip
