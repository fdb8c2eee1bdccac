"""The Lightning ``Trainer`` a run trains with, from the recipe's settings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from distmeta.config import DistMetaConfig

# Lightning warnings that are expected here and not actionable for users: checkpoints hold
# post-step weights by design, and a resumed run writes into its own existing folder.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")


def lightning_trainer(cfg: DistMetaConfig, logger, run_dir: Path, monitor: tuple[str, str], score: str,
                      extra_callbacks: Sequence = ()):  # fmt: skip
    """Checkpoints into ``run_dir`` (the best one by ``monitor``, the last every
    ``checkpoint.every_n_steps``); progress by :mod:`distmeta.recipe.progress` (``score``: the
    validation score's name); ``distmeta bench`` adds its clock as ``extra_callbacks``."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from distmeta.recipe.progress import TerminalBar, progress_callback

    tr = cfg.trainer
    callbacks = [
        ModelCheckpoint(dirpath=run_dir, filename="best", monitor=monitor[0], mode=monitor[1], save_top_k=1,
                        enable_version_counter=False, auto_insert_metric_name=False),
        ModelCheckpoint(dirpath=run_dir, filename="last", every_n_train_steps=cfg.checkpoint.every_n_steps, save_top_k=1,
                        enable_version_counter=False),
        *extra_callbacks,
    ]  # fmt: skip
    if tr.progress_bar:
        callbacks.append(progress_callback(tr.max_steps, tr.log_every_n_steps, cfg.algorithm.meta_batch_size, score))
    return pl.Trainer(
        accelerator="gpu" if cfg.cluster.learner_device == "cuda" else "cpu",
        devices=1,
        max_steps=tr.max_steps,
        logger=logger,
        callbacks=callbacks,
        val_check_interval=tr.val_every_n_steps,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        log_every_n_steps=1,
        enable_progress_bar=any(isinstance(c, TerminalBar) for c in callbacks),
        enable_model_summary=False,
        inference_mode=False,  # validation adapts to tasks: it needs gradients
        default_root_dir=str(run_dir),
    )
