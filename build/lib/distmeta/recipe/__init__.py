"""The run recipe: every part of a run built once from the config (:class:`Recipe`)."""

from distmeta.recipe.recipe import EvalPlan, Recipe
from distmeta.recipe.run import RunSettings, check_resumable
from distmeta.recipe.trainer import lightning_trainer

__all__ = ["EvalPlan", "Recipe", "RunSettings", "check_resumable", "lightning_trainer"]
