"""The one error base of dataworth: every expected failure (bad input, missing state, a refused
setting) is a subclass, so the CLI reports those in one line and lets anything else (a bug) keep
its traceback. Lives in ``valuation`` because every other package may import it (docs/ARCHITECTURE.md)."""


class DataworthError(Exception):
    """Base of every expected dataworth failure."""


class ConfigurationError(DataworthError, ValueError):
    """A setting is out of range, unknown, or does not fit the model or stored output it meets."""
