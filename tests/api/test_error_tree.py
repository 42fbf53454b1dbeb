"""The error tree of contracts.errors and the status table of api/errors.py."""

from __future__ import annotations

import inspect

import pytest

import contracts.errors as errors
from api.error_shapes import native_status
from api.errors import KIND, kind_of

CLASSES = [
    c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
]


def test_every_error_sits_in_exactly_one_branch() -> None:
    branches = (errors.UserError, errors.Unavailable, errors.InternalError, errors.Interrupt)
    roots = {errors.LugpiError, *branches}
    for cls in CLASSES:
        if cls in roots:
            continue
        assert sum(issubclass(cls, b) for b in branches) == 1, cls


def test_interrupts_are_not_errors_of_anyone() -> None:
    # `except LugpiError` (CLI, worker) must never swallow a stop signal.
    for cls in (errors.Cancelled, errors.WorkerStopping, errors.AttemptLost, errors.JobTimeout):
        assert not issubclass(cls, errors.LugpiError), cls


def error(cls: type[errors.LugpiError]) -> errors.LugpiError:
    if issubclass(cls, errors.InvalidInput):
        return cls("texts", "x")
    return cls("x")


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (errors.ConfigError, 400),
        (errors.DataError, 400),
        (errors.ArtifactError, 400),
        (errors.ModelNotFound, 404),
        (errors.JobNotFound, 404),
        (errors.CannotCancel, 409),
        (errors.NoTeacher, 409),
        (errors.TeacherRefused, 409),
        (errors.NoModelLoaded, 503),
        (errors.JobStoreUnavailable, 503),
        (errors.JobQueueUnavailable, 503),
        (errors.TeacherUnavailable, 503),
        (errors.InferenceError, 500),
        (errors.InternalError, 500),
        (errors.InvalidInput, 422),
        (errors.LimitExceeded, 413),
        (errors.Overloaded, 429),
        (errors.DeadlineExceeded, 503),
        (errors.ClientGone, 499),
    ],
)
def test_one_status_per_branch(cls: type[errors.LugpiError], status: int) -> None:
    assert native_status(kind_of(error(cls))) == status


def test_every_project_error_has_a_status() -> None:
    for cls in CLASSES:
        if issubclass(cls, errors.LugpiError) and cls is not errors.LugpiError:
            assert any(c in KIND for c in cls.__mro__), cls


def test_old_import_places_still_name_the_same_classes() -> None:
    from api.errors import ModelNotFound
    from api.jobqueue import JobQueueUnavailable, TeacherUnavailable
    from jobs.lifecycle import AttemptLost
    from jobs.store import JobNotFound, JobStoreUnavailable

    assert ModelNotFound is errors.ModelNotFound
    assert (JobQueueUnavailable, TeacherUnavailable) == (
        errors.JobQueueUnavailable,
        errors.TeacherUnavailable,
    )
    assert AttemptLost is errors.AttemptLost
    assert (JobNotFound, JobStoreUnavailable) == (errors.JobNotFound, errors.JobStoreUnavailable)
