"""Open Inference Protocol v2 request/response bodies, in JSON or with binary tensors.

The binary-tensor extension (what tritonclient sends by default for BYTES inputs): the
body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw
tensors in input order, each taking ``parameters.binary_data_size`` bytes. A BYTES
tensor's raw form is, per element, a 4-byte little-endian length and the bytes.
Responses put an output in binary form when it (or the request) asks for
``binary_data``; its JSON entry then carries ``binary_data_size`` instead of ``data``.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.schemas import MAX_LIST_ITEMS, Count
from contracts.errors import InvalidInput, LimitExceeded

HEADER_LENGTH = "Inference-Header-Content-Length"
# Inputs and outputs a request may name (a classifier has two of each), and the
# dimensions of a shape: a text tensor has one or two, a longer shape is refused by name.
MAX_TENSORS = 8
MAX_DIMS = 8


class TensorInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[Count] = Field(
        max_length=MAX_DIMS, description="[batch] or [batch, 1] for a text input."
    )
    datatype: str = Field(description="BYTES for text.")
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list[Any] | None = Field(
        default=None,
        max_length=MAX_LIST_ITEMS,
        description="The strings (flat, or nested [[text], ...]); absent with binary data.",
    )


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="classification: k -> the k best labels as 'score:index:label'; "
        "binary_data: true -> the tensor in binary form.",
    )


class InferRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
                    ],
                    "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}],
                }
            ]
        },
    )

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[TensorInput] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[RequestedOutput] | None = Field(default=None, max_length=MAX_TENSORS)


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray  # float32 numbers, or an object array of str for BYTES
    binary: bool = False


@dataclass
class ParsedRequest:
    request: InferRequest
    tensors: dict[str, list[str]] = field(default_factory=dict)


def _too_many(name: str) -> LimitExceeded:
    return LimitExceeded(
        f"inputs.{name}", f"more than {MAX_LIST_ITEMS} elements; split the batch over requests"
    )


def _bytes_elements(raw: bytes, name: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(raw):
        if len(out) == MAX_LIST_ITEMS:
            raise _too_many(name)
        if pos + 4 > len(raw):
            raise InvalidInput(f"inputs.{name}", "binary BYTES data ends inside a length prefix")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise InvalidInput(f"inputs.{name}", "binary BYTES data ends inside an element")
        out.append(_decode(raw[pos : pos + n], name))
        pos += n
    return out


def _decode(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"inputs.{name}", f"element is not UTF-8 (byte {e.start})") from e


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"inputs.{name}.data", "BYTES data must be strings")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: valid JSON, not valid Unicode
            raise InvalidInput(
                f"inputs.{name}.data",
                f"a string holds an unpaired surrogate (character {e.start}); send valid Unicode",
            ) from e
    return value


def _strings(data: list[Any], name: str) -> list[str]:
    """The strings of ``data``: flat ``[text, ...]`` or ``[[text], ...]`` (a [batch, 1]
    tensor); deeper nesting is refused rather than walked, and so is a count past the
    bound of every request list."""
    out: list[str] = []
    for item in data:
        for value in item if isinstance(item, list) else (item,):
            if isinstance(value, list):
                raise InvalidInput(
                    f"inputs.{name}.data", "nested deeper than a text tensor's [batch, 1]"
                )
            if len(out) == MAX_LIST_ITEMS:
                raise _too_many(name)
            out.append(_text(value, name))
    return out


def _why(e: Exception) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 at byte {e.start}"
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at character {e.pos}"
    if "digits" in str(e):
        return "an integer of more than 4300 digits"
    return type(e).__name__


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """The request's JSON part, validated, and each input's strings (JSON or binary)."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 <= n <= len(body):
            raise InvalidInput(HEADER_LENGTH, f"{header_length!r} is not a length within the body")
        head, rest = body[:n], body[n:]
    else:
        head, rest = body, b""
    try:
        document = json.loads(head)
    except (ValueError, RecursionError) as e:
        # ValueError: not JSON, not UTF-8, or an integer past Python's 4,300-digit limit;
        # RecursionError: nested deeper than the decoder goes.
        raise InvalidInput("body", f"the inference header is not JSON ({_why(e)})") from e
    try:
        request = InferRequest.model_validate(document)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(loc or "body", first["msg"]) from e
    parsed = ParsedRequest(request)
    pos = 0
    for tensor in request.inputs:
        if tensor.datatype != "BYTES":
            raise InvalidInput(
                f"inputs.{tensor.name}.datatype", f"{tensor.datatype}; text inputs are BYTES"
            )
        size = tensor.parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or pos + size > len(rest):
                raise InvalidInput(
                    f"inputs.{tensor.name}.parameters.binary_data_size",
                    "does not fit the binary data sent after the header",
                )
            values = _bytes_elements(rest[pos : pos + size], tensor.name)
            pos += size
        elif tensor.data is not None:
            values = _strings(tensor.data, tensor.name)
        else:
            raise InvalidInput(f"inputs.{tensor.name}", "has neither data nor binary_data_size")
        # Python's product: numpy's would wrap past 2**63 and could match a wrong count.
        n_expected = math.prod(tensor.shape) if tensor.shape else 0
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(
                f"inputs.{tensor.name}.shape",
                f"{tensor.shape}; a text input is [batch] or [batch, 1]",
            )
        if n_expected != len(values):
            raise InvalidInput(
                f"inputs.{tensor.name}.shape",
                f"{tensor.shape} holds {n_expected} elements but {len(values)} were sent",
            )
        parsed.tensors[tensor.name] = values
    return parsed


def _raw(tensor: OutputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        parts = []
        for value in tensor.values.reshape(-1):
            encoded = str(value).encode()
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        return b"".join(parts)
    return np.ascontiguousarray(tensor.values, dtype="<f4").tobytes()


def encode_response(
    head: dict[str, Any], outputs: list[OutputTensor]
) -> tuple[bytes, dict[str, str], str]:
    """(body, extra headers, media type) of an inference response."""
    entries, blobs = [], []
    for t in outputs:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if t.binary:
            blob = _raw(t)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = [
                str(v) if t.datatype == "BYTES" else float(v) for v in t.values.reshape(-1)
            ]
        entries.append(entry)
    header = json.dumps({**head, "outputs": entries}).encode()
    if not blobs:
        return header, {}, "application/json"
    return header + b"".join(blobs), {HEADER_LENGTH: str(len(header))}, "application/octet-stream"
