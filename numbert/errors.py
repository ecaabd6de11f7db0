"""The exceptions numbert raises on bad checkpoints.

Both subclass ValueError, so `except ValueError` catches them too; bad *inputs* to the
model (wrong ids, shapes, dtypes) raise plain ValueError / TypeError.
"""


class ConfigError(ValueError):
    """config.json is missing, unreadable, or describes a model numbert cannot run."""


class CheckpointError(ValueError):
    """A weights or tokenizer file is missing, corrupt, or does not fit the config."""
