"""The settings of the serving process (and of the job routes it hosts).

Every field is read from an environment variable ``LUGPI_<FIELD>`` (upper case), e.g.
``LUGPI_MODEL_REPOSITORY=/srv/models``. List fields take a comma-separated string
(``LUGPI_API_KEYS=key1,key2``) or a JSON array.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from api.schemas import MAX_LIST_ITEMS
from contracts.model_names import OFFLINE_ALIASES, TINY_RANDOM
from contracts.settings import SharedSettings, split_list

# Ids the job routes accept by default: the paper's models (for users who have the hub)
# and the offline ones that ship on PyPI or are built from config (docs/environment.md).
DEFAULT_ALLOWED_MODELS = [
    "distilbert-base-uncased",
    "openai/clip-vit-base-patch32",
    "google/vit-base-patch16-224",
    "stabilityai/stable-diffusion-2",
    *OFFLINE_ALIASES,
    TINY_RANDOM,
]


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ApiSettings(SharedSettings):
    """The serving process's settings; the ones it shares with the workers (repository,
    artifacts, Redis, job clocks) come from ``SharedSettings``."""

    # --- models ---------------------------------------------------------------------------
    default_model: str | None = Field(
        default=None,
        description="Model used when a request names none; default: the first by name.",
    )
    model_variant: Literal["auto", "int8", "fp32"] = Field(
        default="auto",
        description="Which ONNX file to serve. 'auto': int8 on CPU (a quarter of fp32's memory; "
        "about 3x faster with AVX-512 VNNI, but 1.2-1.4x slower per text on AVX2 without "
        "VNNI, where 'fp32' is the faster choice: docs/environment.md), fp32 on CUDA (dynamic "
        "int8 ops fall back to the CPU); with LUGPI_ENGINE=auto, fp32 where it measures "
        "cheaper at load. A bundle without an int8 file is served in fp32.",
    )
    engine: Literal["onnxruntime", "openvino", "auto"] = Field(
        default="onnxruntime",
        description="What runs the graphs. 'openvino' (the openvino extra; CPU only): the fp32 "
        "graph on OpenVINO, faster than onnxruntime's int8 on CPUs without AVX-512/VNNI and "
        "slower on CPUs with them (docs/environment.md); a version is refused unless OpenVINO "
        "reproduces the probabilities export recorded in bundle.json within 1e-4, with the "
        "same labels. 'auto': per version at load, the cheapest per text on this machine of "
        "onnxruntime on the configured graph, onnxruntime on the fp32 graph (where "
        "LUGPI_MODEL_VARIANT=auto) and OpenVINO (where it passes that check), if it costs at "
        "most 0.9x the first, else the first (GET /models/{name} says which and the figures).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="'auto': CUDAExecutionProvider when onnxruntime-gpu offers it, else CPU.",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="onnxruntime threads inside one operator, per engine instance; 0 = chosen "
        "per version from a cost curve measured at load (api/execution.py, GET /models/{name} "
        "says what and why).",
    )
    instances: int = Field(
        default=0,
        ge=0,
        description="Engine instances per loaded version, each taking batches from the version's "
        "one queue (Triton's instance groups); 0 = usable cores / intra-op threads.",
    )
    batch_cap: int = Field(
        default=0,
        ge=0,
        description="Most texts an engine instance takes at once, and in one onnxruntime call; "
        "0 = measured at load: the batch size of the lowest per-text cost, or 4 where "
        "batching does not lower it (the texts then run in the calls the measured padding "
        "rule cuts, mostly one each). At most LUGPI_MAX_BATCH_SIZE.",
    )
    call_tokens: float = Field(
        default=0,
        ge=0,
        description="Texts of a batch share one onnxruntime call where the padding it adds "
        "is under this many tokens (per text, to the longest); 0 = measured at load: what a "
        "call's fixed cost is worth in padded tokens on this machine (GET /models/{name}).",
    )
    measure_execution: bool = Field(
        default=True,
        description="Measure each version's cost curve at load (a few hundred ms of calls on "
        "its own texts; once per graph file) and choose instances, threads, spinning, the "
        "batch cap and which texts share a call from it. Off: one instance on every core, no "
        "spinning, batches up to LUGPI_MAX_BATCH_SIZE, lone requests on a spinning session "
        "(the behaviour before).",
    )
    inter_op_threads: int = Field(
        default=1, ge=1, description="onnxruntime threads across operators."
    )
    ort_spinning: bool | None = Field(
        default=None,
        description="Let onnxruntime's threads spin between the operators of a call (never "
        "after it: they spin only while there is work). Unset: on where the measurement at "
        "load found it faster (on busy cores it is slower), with more than one intra-op thread.",
    )
    ort_lone_spinning: bool = Field(
        default=True,
        description="Give lone requests (LUGPI_INLINE_LONE_REQUESTS) a second session of the "
        "same graph on every core, where the measurement at load found its batch-1 call "
        "faster than the instance's: onnxruntime's threads spin during the call and stop when "
        "it returns; OpenVINO's cannot spin, and the session gains the cores where instances "
        "have one thread each. On 2 quiet cores it took a lone request from 1.93x to 1.48x "
        "the raw call (p50), for a second copy of the graph in memory and about 1 CPU-ms more "
        "per lone request; batches keep the instances' sessions, so throughput under load is "
        "unchanged (benchmarks/results/peers.md). No effect where the instances spin on every "
        "core already, or on CUDA.",
    )
    max_loaded_versions: int = Field(
        default=16,
        ge=1,
        description="Most model versions loaded at once in the process, all models together. "
        "Each model's default version is loaded at start-up and stays loaded; any other "
        "version is loaded on its first inference request, and the least recently used "
        "non-default versions are unloaded to stay within this bound and LUGPI_MAX_LOADED_MB. "
        "A request for a version that cannot fit (the defaults fill the bound) gets 429.",
    )
    max_loaded_mb: float = Field(
        default=4096.0,
        ge=0.0,
        description="Most memory the loaded versions may take together, in MiB: each one's "
        "is what the process's resident set grew by while it loaded (a MiniLM-size int8 "
        "version: 60-75 MB, benchmarks/results/many_models.md). 0 = no memory bound. "
        "Inference memory is bounded apart (LUGPI_MAX_BATCH_TOKENS, LUGPI_LARGE_BATCH_TOKENS).",
    )
    poll_interval_s: float = Field(
        default=10.0,
        ge=0.0,
        description="Rescan the repository every N seconds for new versions; 0 = off.",
    )

    # --- dynamic batching -----------------------------------------------------------------
    max_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Most texts in one onnxruntime call."
    )
    max_batch_wait_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        description="How long a batch may wait for more requests once it has one. 0: run what "
        "is queued at once; requests that arrive while a batch runs form the next one, so "
        "batches grow with load without delaying a lone request.",
    )
    classify_fast_path: bool = Field(
        default=True,
        description="Answer POST /classify requests that pass every check without FastAPI's "
        "per-request dependency solving (api/fast_classify.py): the same checks and work, "
        "about 0.14 ms less per request on a 2-core machine (0.31 -> 0.17 ms around the "
        "graph call, benchmarks/bench_request_overhead.py). A request that fails a check is "
        "handed to the FastAPI route, which answers it as before. Off: every request takes "
        "the FastAPI route.",
    )
    inline_lone_requests: bool = Field(
        default=True,
        description="Run a one-text request (up to LUGPI_INLINE_MAX_TOKENS tokens) on the "
        "event loop when nothing is queued or running, skipping the hand-off to the batch "
        "thread and back (two thread wake-ups); it holds the loop for that one batch-1 call "
        "(at most LUGPI_INLINE_MAX_MS). Under load every request is batched.",
    )

    # --- teacher (POST /classify/teacher) ---------------------------------------------------
    teacher_max_texts: int = Field(
        default=8, ge=1, description="Most texts in one /classify/teacher call (one image each)."
    )
    teacher_concurrency: int = Field(
        default=2,
        ge=1,
        description="Most /classify/teacher calls waiting for workers at once, each on a "
        "thread of its own pool (never the API's default one); beyond: 429.",
    )

    # --- overload ---------------------------------------------------------------------------
    max_queued_texts: int = Field(
        default=1024,
        ge=1,
        description="Per loaded model version, most texts waiting for inference; a request "
        "that would queue more gets 429 with Retry-After (counted in /metrics), and /readyz "
        "reports 503 'overloaded' while the queue is 90 % full.",
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        description="A /classify request still queued after this long is dropped unrun (503 "
        "with Retry-After): its client has likely given up.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        description="With `--http api.http_protocol:HeaderTimeoutProtocol`: a connection that "
        "has not sent a request's headers this long after opening (or after starting the "
        "request) is closed, so slow clients cannot hold file descriptors.",
    )

    # --- slow clients, inline runs, inference memory, bundle bounds -----------------------
    body_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        description="With `--http api.http_protocol:HeaderTimeoutProtocol`: a request body not "
        "complete this long after its headers is cut off (the connection is closed).",
    )
    min_body_bytes_per_s: float = Field(
        default=1024.0,
        ge=0.0,
        description="With the same protocol: a body arriving slower than this on average, "
        "checked every second from its headers on, is cut off (a byte every few seconds "
        "holds a request slot for nothing); 0 = no rate check, only LUGPI_BODY_TIMEOUT_S.",
    )
    max_receiving_requests: int = Field(
        default=1024,
        ge=1,
        description="With the same protocol: most requests still receiving their body; "
        "beyond, 503. uvicorn's --limit-concurrency then counts only requests being worked "
        "on (body in), never idle connections nor bodies still arriving.",
    )
    inline_max_tokens: int = Field(
        default=128,
        ge=0,
        description="A lone request runs inline on the event loop only if its text has at "
        "most this many tokens (counted after tokenizing) and a call of that length took at "
        "most LUGPI_INLINE_MAX_MS when the version was loaded; longer ones go through the "
        "batch thread. 0 = never inline.",
    )
    inline_max_ms: float = Field(
        default=20.0,
        gt=0.0,
        description="Longest a batch-1 call run inline may take (measured per version at "
        "load, fastest of 3): the time it holds the event loop for. It runs only when every "
        "instance is idle, and holds them all, so other requests to the version would wait "
        "for it anyway; requests to other versions and health checks wait for the loop. On "
        "a 2-core AVX2 machine, where a one-sentence text (28 tokens) is a 7 ms call, 5 ms "
        "inlined texts of at most 8 or 16 tokens; 20 ms takes up to 64, for a c=1 p50 of 0.94x in "
        "lockstep (benchmarks/results/peers.md).",
    )
    max_batch_tokens: int = Field(
        default=4096,
        ge=1,
        description="Most padded tokens (texts x longest text; past 512 tokens, texts x "
        "length^2 / 512) in one onnxruntime call: a batch of long texts is cut into calls "
        "of at most this size (a single text always runs). Attention memory grows with "
        "texts x length^2: 64 x 512 tokens needs about 0.8 GB per layer, 8 x 512 an eighth.",
    )
    large_batch_tokens: int = Field(
        default=2048,
        ge=1,
        description="A call of more padded tokens than this is 'large': one large call runs "
        "at a time in the whole process (across every loaded version), and onnxruntime's "
        "arena gives back what it took once the call ends.",
    )
    max_tokenizer_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest tokenizer.json a bundle may ship; larger: the version is not "
        "loaded, nor its file parsed. tokenizers holds the GIL while it parses, so the whole "
        "server, event loop included, stalls for the parse (on 2 loaded cores: MiniLM's 0.7 "
        "MB, 0.2 s; 9.8 MB of 500k entries, 4 s; a 42 MB one stalled it for 3.2 s and took "
        "1.8 GB). BERT, RoBERTa and multilingual BERT ship 0.5-3 MB; raise it for a larger "
        "one (XLM-R: 17 MB).",
    )
    max_vocab_size: int = Field(
        default=250_000,
        ge=1,
        description="Largest vocabulary a bundle's tokenizer may have (XLM-R: 250,002); "
        "larger: not loaded.",
    )
    max_model_length: int = Field(
        default=2048,
        ge=1,
        description="Largest max_length a bundle.json may declare; every version is also "
        "warmed up with a max_length input before it is served, so one whose graph cannot "
        "take its max_length never replaces a working version.",
    )

    # --- request limits -------------------------------------------------------------------
    max_texts_per_request: int = Field(
        default=64,
        ge=1,
        le=MAX_LIST_ITEMS,
        description="Most texts in one /classify call (any surface); at most "
        f"{MAX_LIST_ITEMS}, the bound every request list has in its schema.",
    )
    max_text_chars: int = Field(
        default=10_000, ge=1, description="Most characters in one text (or text pair item)."
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest request body; larger ones get 413."
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="With `--http api.http_protocol:HeaderTimeoutProtocol`: largest request "
        "head (request line and headers); a larger one gets 431 and the connection closes.",
    )

    # --- access ---------------------------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys that may classify (header X-API-Key or 'Authorization: Bearer'). "
        "No key of any kind configured: /classify is open to anyone.",
    )
    teacher_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys that may also call /classify/teacher (it occupies a GPU worker); "
        "admin keys may too.",
    )
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys that may also reload models and run jobs. None configured: admin "
        "routes are closed to everyone (unless LUGPI_ALLOW_UNAUTHENTICATED_ADMIN).",
    )
    allow_unauthenticated_admin: bool = Field(
        default=False,
        description="Only for a loopback, single-user setup: with no admin keys, open the admin "
        "and teacher routes to every client. Logged as a warning at start-up; ignored once "
        "admin keys are configured.",
    )

    # --- jobs (used by api/routes/jobs.py) ------------------------------------------------
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("data")],
        description="A job's data paths must resolve under one of these (no '..', no symlinks "
        "out).",
    )
    allowed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_MODELS),
        description="Model ids or aliases a job may name (generator, encoders).",
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator(
        "api_keys", "teacher_keys", "admin_keys", "data_roots", "allowed_models", mode="before"
    )
    @classmethod
    def _lists_from_env(cls, value: object) -> object:
        return split_list(value)

    @model_validator(mode="after")
    def _check_keys(self) -> ApiSettings:
        for field in ("api_keys", "teacher_keys", "admin_keys"):
            if any(not k.get_secret_value() for k in getattr(self, field)):
                raise ValueError(f"LUGPI_{field.upper()} contains an empty key; remove it")
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.teacher_keys or self.admin_keys)

    @property
    def ort_intra_op_threads(self) -> int:
        return self.intra_op_threads or usable_cores()

    @property
    def execution_overrides(
        self,
    ) -> tuple[int | None, int | None, bool | None, int | None, float | None]:
        """(instances, intra-op threads, spinning, batch cap, call tokens) forced by
        settings; None where each is measured (api.execution.Overrides)."""
        return (
            self.instances or None,
            self.intra_op_threads or None,
            self.ort_spinning,
            self.batch_cap or None,
            self.call_tokens or None,
        )
