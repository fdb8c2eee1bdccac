"""The Lightning learner: aggregation of shard results, the MetaLearner module, tick loaders."""
