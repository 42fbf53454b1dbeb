"""The one error hierarchy of the project.

Every error a user can cause (bad data, bad config, missing model, full disk)
is a ``LugpiError`` whose message names the file or field and what to do.
Third-party errors are re-raised at the boundary as one of these, ``from`` the
original, so callers (CLI, worker, API) catch one type and show one message.
Torch-free: the API imports it.
"""

from __future__ import annotations


class LugpiError(Exception):
    """Base class: something the user can fix; the message says what."""


class ConfigError(LugpiError):
    """A training config or setting is invalid."""


class DataError(LugpiError):
    """A dataset file is missing, malformed, or unusable (empty, one class...)."""


class ModelLoadError(LugpiError):
    """A model id or path does not exist, is not allowed, or does not load."""


class ArtifactError(LugpiError):
    """A stage's artifact directory is missing, incomplete or corrupt."""


class ExportCheckError(LugpiError):
    """An exported model disagrees with the PyTorch model beyond tolerance."""


class RepositoryError(LugpiError):
    """The model repository cannot be read or written consistently."""


class Cancelled(LugpiError):
    """A job was cancelled; raised at the next batch boundary."""
