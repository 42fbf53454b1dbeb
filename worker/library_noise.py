"""Keep the libraries' routine output out of a job's log (``LUGPI_VERBOSE_JOB_LOG`` keeps
it): transformers' per-load reports (a fresh classifier head is "MISSING" by design every
time a student starts from an encoder), its token-length and fallback notices, the weight
loading and shard writing progress bars, deprecation notices, the ONNX exporter's
warnings and the quantizer's per-tensor lines. What is left is the job's own progress,
real warnings of our code, and errors, with their tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Read by the libraries at import: set before they are imported.
_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",  # its fork warning
}


_LIBRARIES = (
    r"(torch|transformers|diffusers|onnx|onnxruntime|onnxscript|huggingface_hub|datasets|"
    r"tokenizers|safetensors|accelerate)(\.|$)"
)
_LIBRARY_DIRS = ("/onnxruntime/", "/onnx/", "/transformers/", "/diffusers/", "/torch/")


def _library_chatter(record: logging.LogRecord) -> bool:
    """Drop what a library logs on the root logger below ERROR."""
    return record.levelno >= logging.ERROR or not any(d in record.pathname for d in _LIBRARY_DIRS)


def quiet_libraries(verbose: bool) -> None:
    """Call once, first thing in a process that runs stages."""
    if verbose:
        return
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    # Library warnings (deprecations, tracer and exporter details) are not the user's
    # concern in a job; our own code's warnings (training., models., ...) stay.
    warnings.filterwarnings("ignore", category=Warning, module=_LIBRARIES)
    # Raised by torch, attributed by its stacklevel to our export code.
    warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based")
    logging.getLogger().addFilter(_library_chatter)  # the quantizer logs on the root logger
    for name in ("onnxruntime", "onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Already imported (a worker imports them early): set their loggers and bars directly.
    if "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging

        tf_logging.set_verbosity_error()
        tf_logging.disable_progress_bar()
    if "diffusers" in sys.modules:
        from diffusers.utils import logging as df_logging

        df_logging.set_verbosity_error()
        df_logging.disable_progress_bar()
