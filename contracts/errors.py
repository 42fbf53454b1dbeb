"""Every error the project raises on purpose, in one tree.

    Exception
     ├── LugpiError               raised on purpose; ``str(e)`` is the whole message
     │    ├── UserError           the caller can fix it (HTTP 4xx); names the field or file
     │    │    ├── ConfigError, DataError, ModelLoadError,
     │    │    │   ArtifactError, ExportCheckError, RepositoryError      400
     │    │    ├── InvalidInput  a request field cannot be served as given  422
     │    │    │    └── LimitExceeded  over a deployment limit           413
     │    │    ├── NotFound: ModelNotFound, JobNotFound                  404
     │    │    ├── Conflict: CannotCancel, NoTeacher, TeacherRefused     409
     │    │    └── ClientGone    the client left before its answer      499
     │    ├── Unavailable         a service we depend on is down or slow; retry (HTTP 503)
     │    │    ├── NoModelLoaded, JobStoreUnavailable, JobQueueUnavailable,
     │    │    │   TeacherUnavailable, DeadlineExceeded
     │    │    └── Overloaded    too much queued: come back later       429
     │    └── InternalError       our fault or a broken dependency (HTTP 500)
     │         └── InferenceError
     └── Interrupt                not an error: a running job is told to stop
          ├── Cancelled           a user cancelled the job            -> cancelled
          ├── WorkerStopping      the worker shuts down               -> queued again
          ├── AttemptLost         another worker owns the job now     -> left alone
          └── JobTimeout          the job ran past its time limit     -> failed

Third-party errors are re-raised at the boundary as one of these, ``from`` the original,
so callers catch one branch: ``except UserError`` to report, ``except Unavailable`` to
retry, and ``except LugpiError`` never swallows an ``Interrupt``. The HTTP status of each
branch is written once, in ``api/errors.py`` (and per protocol surface in
``api/error_shapes.py``). Torch-free: the API imports it.
"""

from __future__ import annotations


class LugpiError(Exception):
    """Base of the errors this project raises on purpose; the message says what happened."""


# --- the caller can fix it ----------------------------------------------------------------
class UserError(LugpiError):
    """Bad input, config, data or state the caller controls; the message says what to fix."""


class ConfigError(UserError):
    """A training config or setting is invalid."""


class DataError(UserError):
    """A dataset file is missing, malformed, or unusable (empty, one class...)."""


class ModelLoadError(UserError):
    """A model id or path does not exist, is not allowed, or does not load."""


class ArtifactError(UserError):
    """A stage's artifact directory is missing, incomplete or corrupt."""


class ExportCheckError(UserError):
    """An exported model disagrees with the PyTorch model beyond tolerance."""


class RepositoryError(UserError):
    """The model repository cannot be read or written consistently."""


class InvalidInput(UserError):
    """A request that parsed but cannot be served as asked; names the field to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class LimitExceeded(InvalidInput):
    """Over a deployment limit (texts per request, characters, tokens without truncation)."""


class NotFound(UserError):
    """The request names something that does not exist; the message lists what does."""


class ModelNotFound(NotFound):
    """A request names a model or version that is not served."""


class JobNotFound(NotFound):
    """No job with this id."""


class Conflict(UserError):
    """The request is well formed, but the state of what it names forbids it."""


class CannotCancel(Conflict):
    """The job already finished, or is publishing (past its last cancel point)."""


class NoTeacher(Conflict):
    """The model was not trained by a job here, so there is no teacher to ask."""


class TeacherRefused(Conflict):
    """The worker could not answer for this job's teacher (its run or teacher is missing)."""


class ClientGone(UserError):
    """The client disconnected before its answer was ready; its work was dropped."""


# --- a dependency is down -----------------------------------------------------------------
class Unavailable(LugpiError):
    """Something this process depends on is unreachable or too slow; retrying may work."""


class NoModelLoaded(Unavailable):
    """No bundle is loaded (empty repository, or every bundle failed to load)."""


class JobStoreUnavailable(Unavailable):
    """The job store's backend (Redis) cannot be reached; the message says where."""


class JobQueueUnavailable(Unavailable):
    """The broker cannot be reached, so the job cannot be handed to a worker."""


class TeacherUnavailable(Unavailable):
    """No worker answered a teacher request in time (or none can in this mode)."""


class Overloaded(Unavailable):
    """More texts are queued for this model than LUGPI_MAX_QUEUED_TEXTS: try again later."""


class DeadlineExceeded(Unavailable):
    """A request waited in the queue past LUGPI_REQUEST_TIMEOUT_S; it was dropped unrun."""


# --- not the caller's doing ---------------------------------------------------------------
class InternalError(LugpiError):
    """A bug, or a dependency that failed on valid input; the log has the traceback."""


class InferenceError(InternalError):
    """onnxruntime failed on a batch that passed validation."""


# --- control flow, not errors ---------------------------------------------------------------
class Interrupt(Exception):
    """A running job must stop now; which subclass says what becomes of it."""


class Cancelled(Interrupt):
    """A job was cancelled; raised at the next batch boundary."""


class WorkerStopping(Interrupt):
    """This worker is shutting down; the job is handed back, not failed."""


class AttemptLost(Interrupt):
    """This process no longer owns the job (it was reaped and handed to another worker)."""


class JobTimeout(Interrupt):
    """The job ran longer than the configured limit; it fails with this message."""
