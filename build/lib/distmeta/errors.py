"""User-facing errors.

A ``UserError`` means the input (config, paths, addresses, checkpoints) is wrong, not the code:
the CLI prints its message as one paragraph and exits with code 2, without a traceback.
"""


class UserError(Exception):
    """Bad input that the user can fix; the message names what is wrong and how to fix it."""


class ConfigError(UserError):
    """A config file, key or value is invalid."""


class NonFiniteGradientError(RuntimeError):
    """A shard returned a NaN/inf meta-gradient; the run stops before the optimizer applies it."""


class ShardsFailedError(RuntimeError):
    """A shard's tasks failed on every attempt (actors that died or never answered in time); the
    run stops at that step, its last checkpoint kept."""
