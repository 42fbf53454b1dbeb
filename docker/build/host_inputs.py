"""Turn this host's pip setup into build inputs for the images (docker/build-images.sh).

    python3 docker/build/host_inputs.py OUT_DIR WHEELS_DIR TORCH_VERSION

Behind a TLS-intercepting proxy, or with a private index, pip works on the host only because
of its configuration; inside a build none of it exists. This writes, for BuildKit secrets:

    OUT_DIR/ca-certificates   the CA bundle pip trusts here (PIP_CERT / `cert`)
    OUT_DIR/pip-constraints   the constraints files (PIP_CONSTRAINT / `constraint`)
    OUT_DIR/pip.conf          index URLs, timeouts, retries, trusted hosts
                              (local file:// indexes are left out: a build cannot see them)

and links the CPU torch wheel ``torch-TORCH_VERSION+cpu-*.whl`` from the find-links
directories into WHEELS_DIR (part of the worker's build context). It prints what it passed
on. Standard library only; pip itself is asked for its configuration when it is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Settings that mean the same inside a build as on the host.
PORTABLE = ("index-url", "extra-index-url", "timeout", "default-timeout", "retries")


def pip_config() -> dict[str, str]:
    """pip's effective settings (environment over files), as `pip config list` shows them."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    files: dict[str, str] = {}
    env: dict[str, str] = {}
    for line in out.splitlines():
        m = re.fullmatch(r"(:env:|[\w-]+)\.([\w-]+)='(.*)'", line.strip())
        if m:
            scope, key, value = m.groups()
            # Files are listed in the order pip reads them (a later one wins); the
            # environment wins over every file.
            (env if scope == ":env:" else files)[key] = value
    return files | env


def split(value: str) -> list[str]:
    return [v for v in re.split(r"\s+", value.strip()) if v]


def main(out_dir: Path, wheels_dir: Path, torch_version: str) -> None:
    config = pip_config()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("ca-certificates", "pip-constraints", "pip.conf"):
        (out_dir / stale).unlink(missing_ok=True)

    if cert := config.get("cert"):
        shutil.copyfile(cert, out_dir / "ca-certificates")
        print(f"build input: CA bundle {cert}")
    if constraint := config.get("constraint"):
        text = "".join(Path(f).read_text() + "\n" for f in split(constraint))
        (out_dir / "pip-constraints").write_text(text)
        print(f"build input: constraints {constraint}")

    lines = []
    for key in PORTABLE:
        values = [v for v in split(config.get(key, "")) if not v.startswith("file:")]
        dropped = [v for v in split(config.get(key, "")) if v.startswith("file:")]
        if dropped:
            print(f"build input: {key} {' '.join(dropped)} left out (local to this host)")
        if values:
            lines.append(f"{key} = {' '.join(values)}")
    if lines:
        (out_dir / "pip.conf").write_text("[global]\n" + "\n".join(lines) + "\n")
        print("build input: pip.conf with " + ", ".join(line.split()[0] for line in lines))

    pattern = f"torch-{torch_version}+cpu-*.whl"
    for source in split(config.get("find-links", "")):
        for wheel in sorted(Path(source).glob(pattern)) if Path(source).is_dir() else []:
            target = wheels_dir / wheel.name
            if not target.exists():
                try:
                    os.link(wheel, target)  # same file system: no copy of ~200 MB
                except OSError:
                    shutil.copyfile(wheel, target)
            print(f"build input: local wheel {wheel.name}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
