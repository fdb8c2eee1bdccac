"""distmeta: distributed multi-task meta-training.

import distmeta
cfg = distmeta.load_config("configs/sine_maml.yaml", ["trainer.max_steps=2000"])
result = distmeta.train(cfg)
report, figure = distmeta.evaluate(result.last_checkpoint)
"""

from distmeta._version import __version__ as __version__

_API = ("load_config", "train", "evaluate", "TrainResult")


def __getattr__(name: str):
    # Lazy: `import distmeta` stays light for Ray workers and the pure core.
    if name in _API:
        from distmeta import api

        return getattr(api, name)
    raise AttributeError(f"module 'distmeta' has no attribute '{name}'")


__all__ = list(_API)
