"""User-facing errors. The CLI prints these as one clear line and exits non-zero (no traceback),
because they describe bad input, not bugs."""


class DiffactError(Exception):
    """Base class: a problem with the user's input, data or configuration."""


class ConfigError(DiffactError):
    """A configuration value is missing or has the wrong type/value."""


class DataError(DiffactError):
    """A dataset file or folder is missing or malformed."""


class LayerError(DiffactError):
    """A requested activation name is unknown or not present in the model."""


class ModelError(DiffactError):
    """A model cannot be loaded or is of an unsupported class."""
