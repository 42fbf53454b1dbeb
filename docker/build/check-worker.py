"""Fail the worker image's build when it is not the variant that was asked for.

    python check-worker.py cuda    # GPU image: torch built for CUDA, onnxruntime's CUDA provider
    python check-worker.py cpu     # CPU image: a CPU torch, no CUDA libraries pulled in

Run at build time, so an image that would only fail on its first job is never tagged.
A GPU is not needed: both checks read what was installed, not what the machine has.
"""

from __future__ import annotations

import importlib.metadata
import sys


def problems(variant: str) -> list[str]:
    import onnxruntime
    import torch

    found: list[str] = []
    providers = onnxruntime.get_available_providers()
    nvidia = sorted(
        name
        for d in importlib.metadata.distributions()
        if (name := d.metadata["Name"] or "").lower().startswith("nvidia-")
    )
    if variant == "cuda":
        if "CUDAExecutionProvider" not in providers:
            found.append(
                f"onnxruntime offers no CUDAExecutionProvider (it has {providers}): the GPU "
                "worker needs onnxruntime-gpu in place of onnxruntime. For a CPU worker, build "
                "with --build-arg VARIANT=cpu."
            )
        if not torch.version.cuda:
            found.append(
                f"torch {torch.__version__} is a CPU build: the GPU worker needs a CUDA torch "
                "(TORCH_INDEX_URL names where to get one)."
            )
    elif variant == "cpu":
        if torch.version.cuda:
            found.append(
                f"torch {torch.__version__} is a CUDA {torch.version.cuda} build in the CPU "
                "image: give the build the CPU wheel (docker/wheels/ or TORCH_INDEX_URL)."
            )
        if nvidia:
            found.append(f"CUDA libraries in the CPU image: {', '.join(nvidia)}")
    else:
        found.append(f"unknown variant {variant!r}: use cuda or cpu")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    found = problems(argv[0])
    for p in found:
        print(f"worker image ({argv[0]}): {p}", file=sys.stderr)
    if not found:
        import torch

        print(f"worker image ({argv[0]}): torch {torch.__version__}, CUDA {torch.version.cuda}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
