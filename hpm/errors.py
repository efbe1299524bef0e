"""Errors that carry a message meant for the user (printed by the CLI without a traceback)."""


class HpmError(Exception):
    """Base class: something the user can fix; the message says what to do."""


class ConfigError(HpmError):
    """An unknown config key or an invalid value."""


class DataError(HpmError):
    """A data set that is missing, empty or unreadable."""


class CheckpointError(HpmError):
    """A checkpoint that is missing, corrupt or of another architecture."""


class CheckpointDamaged(CheckpointError):
    """A checkpoint whose files are truncated, missing or fail their recorded hashes (a resume
    moves it aside and falls back to the newest valid one)."""


class DiskFullError(HpmError):
    """A write failed because the file system is full (or over quota); what was written before is intact."""


class NonFiniteLossError(HpmError):
    """Training produced a NaN or infinite loss."""


class Preempted(HpmError):
    """A stop signal (SIGTERM, SIGUSR1) ended the run after a checkpoint; re-running resumes.

    Attributes:
        signum: The signal received.
        exit_code: ``128 + signum`` (143 for SIGTERM, 138 for SIGUSR1), the status the CLI exits with.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class OutputDirError(HpmError):
    """The output directory cannot be created or written (read-only, no permission, not a directory)."""


class RunDirInUse(HpmError):
    """Another process holds the run directory's lock: one run per directory."""


class Interrupted(KeyboardInterrupt):
    """A second Ctrl-C stopped a run at once; the message says from which step a re-run resumes."""
