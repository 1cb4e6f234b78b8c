"""One exception type for every *expected* failure, so the CLI can print a clear message instead of a traceback."""


class GenzooError(Exception):
    """Bad input or a broken environment: the message says what went wrong and how to fix it."""


class ParamsError(GenzooError):
    """params.yaml has an unknown key, a wrong type or an out-of-range value."""


class DataError(GenzooError):
    """A data file is missing, corrupt, truncated or could not be fetched from any source."""


class TrainingError(GenzooError):
    """Training cannot go on (a NaN or inf loss, a checkpoint that does not fit the model)."""


class Interrupted(GenzooError):
    """SIGTERM arrived (or a deadline passed): the stage stopped early; re-running the same command resumes from
    the last checkpoint. Exits 143 (128 + SIGTERM), as a process killed by SIGTERM would."""

    exit_code = 143

    def __init__(self, message: str, step: int = 0, total: int = 0) -> None:
        super().__init__(message)
        self.step, self.total = step, total


class WriteError(GenzooError):
    """A file could not be written (a full disk, a size limit, no permission). Writes are atomic, so the file's
    previous version, if it had one, is intact; the message names the file and says so."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
