"""One exception type for every *expected* failure, so the CLI can print a clear message instead of a traceback."""


class GenzooError(Exception):
    """Bad input or a broken environment: the message says what went wrong and how to fix it."""


class ParamsError(GenzooError):
    """params.yaml has an unknown key, a wrong type or an out-of-range value."""


class DataError(GenzooError):
    """A data file is missing, corrupt, truncated or could not be fetched from any source."""


class TrainingError(GenzooError):
    """Training cannot go on (a NaN or inf loss, a checkpoint that does not fit the model)."""
