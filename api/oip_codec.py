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
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.errors import InvalidInput

HEADER_LENGTH = "Inference-Header-Content-Length"


class TensorInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[int] = Field(description="[batch] or [batch, 1] for a text input.")
    datatype: str = Field(description="BYTES for text.")
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list[Any] | None = Field(
        default=None, description="The strings (flat or nested); absent with binary data."
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
    inputs: list[TensorInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


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


def _bytes_elements(raw: bytes, name: str) -> list[str]:
    out, pos = [], 0
    while pos < len(raw):
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


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


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
        request = InferRequest.model_validate(json.loads(head))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput("body", f"the inference header is not JSON ({type(e).__name__})") from e
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
            flat = _flatten(tensor.data)
            if not all(isinstance(v, str) for v in flat):
                raise InvalidInput(f"inputs.{tensor.name}.data", "BYTES data must be strings")
            values = [str(v) for v in flat]
        else:
            raise InvalidInput(f"inputs.{tensor.name}", "has neither data nor binary_data_size")
        n_expected = int(np.prod(tensor.shape)) if tensor.shape else 0
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
