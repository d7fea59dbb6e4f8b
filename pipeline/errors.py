"""The one error tree of klingflow, and the CLI exit code each branch maps to.

Foreign errors (httpx, botocore, subprocess, yaml) are translated at the boundary where they
happen, with ``raise ... from exc``, so callers only ever see these::

    KlingflowError                      70  internal / unexpected
    ├── InputError                      65  bad input the user can fix
    │   ├── ScriptError                 65  an invalid render script (all problems at once)
    │   ├── InputNotFound               66  a script or input file that does not exist
    │   └── ConfigError                 78  bad settings (environment, token file, flags)
    ├── BudgetError                      3  even the cheapest honest plan exceeds budget.limit_usd
    ├── PromptTooLong                   65  a compiled prompt over the provider's limit
    ├── ProviderError                   69  anything the generation provider answered or failed to
    │   ├── BadRequest                  65  4xx with the provider's error_code and detail
    │   ├── AuthError                   77  401 / 403, or no token where one is needed
    │   ├── NoBalance                    4  402, or error_code 400002
    │   ├── RateLimited                 75  429 (carries retry_after seconds)
    │   ├── UpstreamError               69  5xx
    │   ├── TransportError              75  connect / read errors, timeouts
    │   │   └── SubmitOutcomeUnknown    75  a paid submit whose answer was lost: maybe billed
    │   ├── DownloadError               74  refused host, over the size cap, truncated, bad file
    │   │   └── DownloadIncomplete      74  bytes arrived short or unreadable: a fresh download may work
    │   ├── GenerationFailed             1  the provider reports the generation failed
    │   ├── GenerationCancelled          1  the request was cancelled
    │   └── GenerationTimeout           75  still unfinished when our wait cap ran out (still billing)
    ├── MediaError                      74  ffmpeg / ffprobe failed (carries its stderr tail)
    ├── StorageError                    74  a store (S3, a directory) failed to store, read or verify
    │   ├── StorageAuthError            77  wrong credentials / access denied
    │   ├── StorageUnavailable          69  missing bucket, server unreachable
    │   ├── StorageConflict             73  a different object already sits under that key
    │   ├── StorageNotFound             74  no object under a key where one was needed
    │   └── DiskFull                    73  no space left where a file must be written
    ├── StackError                      69  a local service (PostgreSQL, …) failed (carries its log tail)
    ├── RunBusy                         75  another process is rendering this run id right now
    │   └── JobBusy                     75  another process is buying this very job
    ├── RunAborted                  (its error's)  the provider refused the token / has no balance mid-run
    └── RunIncomplete                    1  a run ended with some masters not delivered

Exit codes follow sysexits (as the RunComfy CLI does); 1, 3 and 4 are ours; 64 is a usage
error and 130 a run stopped on purpose (Ctrl-C, SIGTERM, ``klingflow cancel``: all the same
stop). What is not in this tree reaching the command line is a bug: 70. The README lists them all.
``ArchiveError``, ``ArchiveAuthError``, ``ArchiveUnavailable`` and ``ArchiveConflict`` are the
storage classes under the archive's former names.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BUDGET = 3
EXIT_NO_BALANCE = 4
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_CANTCREAT = 73
EXIT_IOERR = 74
EXIT_TEMPFAIL = 75
EXIT_NOPERM = 77
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130


class KlingflowError(Exception):
    """Root of every error klingflow raises on purpose."""

    exit_code: int = EXIT_SOFTWARE


# --- bad input ------------------------------------------------------------------------------


class InputError(KlingflowError):
    """Input the user can fix: a script, a file, a setting."""

    exit_code = EXIT_DATAERR


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in a render script, located by file, line and field path."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScriptError(InputError):
    """An invalid render script; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.path, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class InputNotFound(InputError):
    """A script or input file that does not exist."""

    exit_code = EXIT_NOINPUT


class ConfigError(InputError):
    """Bad settings: environment variables, token file, command-line flags."""

    exit_code = EXIT_CONFIG


class PromptTooLong(InputError):
    """A compiled prompt longer than the provider accepts; names the shot that weighs most."""

    def __init__(self, message: str, *, narrative_index: int = 0, shot_index: int = 0) -> None:
        self.narrative_index = narrative_index
        self.shot_index = shot_index
        super().__init__(message)


class BudgetError(KlingflowError):
    """Even the cheapest honest plan does not fit in ``budget.limit_usd``; nothing was spent."""

    exit_code = EXIT_BUDGET


# --- provider -------------------------------------------------------------------------------


class ProviderError(KlingflowError):
    """Anything the generation provider answered, or failed to answer.

    Carries what is known: HTTP status, the provider's six-digit ``error_code``, its message and
    ``detail``, and the request id. Never the token.
    """

    exit_code = EXIT_UNAVAILABLE

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: int | None = None,
        detail: object = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.error_code = error_code
        self.detail = detail
        self.request_id = request_id
        super().__init__(message)


class BadRequest(ProviderError):
    """The provider refused the request (4xx): fix the input, do not retry."""

    exit_code = EXIT_DATAERR


class AuthError(ProviderError):
    """401 / 403, or no token configured where one is needed."""

    exit_code = EXIT_NOPERM


class NoBalance(ProviderError):
    """The provider account has no balance left (402 or error_code 400002)."""

    exit_code = EXIT_NO_BALANCE


class RateLimited(ProviderError):
    """429: slow down; ``retry_after`` is the provider's hint in seconds, when it gave one."""

    exit_code = EXIT_TEMPFAIL

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class UpstreamError(ProviderError):
    """The provider failed on its side (5xx)."""

    exit_code = EXIT_UNAVAILABLE


class TransportError(ProviderError):
    """The provider could not be reached or did not answer in time."""

    exit_code = EXIT_TEMPFAIL


class SubmitOutcomeUnknown(TransportError):
    """A paid submit was sent but its answer was lost: it may have been created and billed.

    Never resubmitted without an explicit opt-in (``--resubmit-unknown``).
    """


class DownloadError(ProviderError):
    """A result could not be downloaded safely: refused host, too large, truncated, invalid."""

    exit_code = EXIT_IOERR


class DownloadIncomplete(DownloadError):
    """The file arrived truncated, corrupt or failed verification; downloading again may succeed.

    Downloads cost nothing, so the client retries these (capped); other download errors (a
    refused host, a file over the size cap) are final.
    """


class GenerationFailed(ProviderError):
    """The provider reports that the generation failed."""

    exit_code = EXIT_FAILURE


class GenerationCancelled(ProviderError):
    """The request was cancelled before it completed."""

    exit_code = EXIT_FAILURE


class GenerationTimeout(ProviderError):
    """The request was still unfinished when our wait cap ran out.

    The provider may still complete (and bill) it: the request id is kept so it can be looked
    up again later instead of being resubmitted.
    """

    exit_code = EXIT_TEMPFAIL


# --- media, archive, run --------------------------------------------------------------------


class MediaError(KlingflowError):
    """ffmpeg or ffprobe failed, or a media file is not what it must be."""

    exit_code = EXIT_IOERR

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        self.stderr_tail = stderr_tail
        super().__init__(f"{message}\n{stderr_tail}".rstrip() if stderr_tail else message)


class StorageError(KlingflowError):
    """A store (an S3 bucket, a local directory) could not store, read or verify an object."""

    exit_code = EXIT_IOERR


class StorageAuthError(StorageError):
    """The store refused our credentials (or the file system our permissions)."""

    exit_code = EXIT_NOPERM


class StorageUnavailable(StorageError):
    """The store's bucket does not exist or its server cannot be reached."""

    exit_code = EXIT_UNAVAILABLE


class StorageConflict(StorageError):
    """A different object already sits under the key we were about to write."""

    exit_code = EXIT_CANTCREAT


class StorageNotFound(StorageError):
    """No object under a key where one was needed (most callers treat absence as an answer)."""


class DiskFull(StorageError):
    """No space left on the device where a file must be written."""

    exit_code = EXIT_CANTCREAT


# The archive was storage's first user: its names are the same classes, so code that catches
# them keeps working while errors raised outside the archive (reading a script) carry neutral names.
ArchiveError = StorageError
ArchiveAuthError = StorageAuthError
ArchiveUnavailable = StorageUnavailable
ArchiveConflict = StorageConflict


class StackError(KlingflowError):
    """A service of the local stack (a throwaway PostgreSQL cluster, …) failed to start or answer."""

    exit_code = EXIT_UNAVAILABLE

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(f"{message}\n{log_tail}".rstrip() if log_tail else message)


class RunBusy(KlingflowError):
    """Another process holds this run (two ``klingflow run`` of one script at once): try later."""

    exit_code = EXIT_TEMPFAIL


class JobBusy(RunBusy):
    """Another process is buying or has bought this job (two runs of one run id at once)."""

    def __init__(self, key: str, status: str) -> None:
        self.status = status  # a JobStatus (a str enum); errors.py imports nothing of ours
        super().__init__(f"job {key} is {status} in another process: not bought twice")


class RunAborted(KlingflowError):
    """Going on cannot help (the provider refused the token, or the account has no balance).

    Carries the provider's error; the exit code is that error's (77, 4, …).
    """

    def __init__(self, error: KlingflowError) -> None:
        self.error = error
        self.exit_code = error.exit_code
        super().__init__(str(error))


class RunIncomplete(KlingflowError):
    """A run ended with some masters not delivered (the others were)."""

    exit_code = EXIT_FAILURE
