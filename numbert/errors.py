"""The exceptions numbert raises on bad checkpoints.

Both subclass ValueError, so `except ValueError` catches them too; bad *inputs* to the
model (wrong ids, shapes, dtypes) raise plain ValueError / TypeError.
"""


class ConfigError(ValueError):
    """config.json is missing, unreadable, or describes a model numbert cannot run."""


class CheckpointError(ValueError):
    """A weights or tokenizer file is missing, corrupt, or does not fit the config."""


def positive_int(value, name: str, *, none_ok: bool = False, error=ValueError):
    """`value` if it is a positive int (not a bool), else `error` naming `name` and what was found."""
    if value is None and none_ok:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise error(f"{name} must be a positive integer{' or None' if none_ok else ''}, found {value!r}")
    return value
