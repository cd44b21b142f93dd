"""The echoconf image: the engine started when it is not running (docker/engine), the base
image made offline when absent (docker/base-image), the image built when its build context
changed. `python3 -m echoconf.images REPO` does all three (docker/ci's step 3)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.errors
from docker.utils.build import exclude_paths

from .dockerenv import BASE_IMAGE, CONTEXT_LABEL, DOCKERFILE, IMAGE, DockerEnvError, Log, log_stderr, client


def _script(repo_root: Path, name: str, log: Log) -> None:
    path = Path(repo_root) / "docker" / name
    if not path.exists():
        raise DockerEnvError(f"{path} is missing")
    log(f"running {path}")
    proc = subprocess.run(["bash", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout.splitlines():
        log(f"  {line}")
    if proc.returncode != 0:
        raise DockerEnvError(f"{path} failed with status {proc.returncode}")


def ensure_engine(repo_root: str | os.PathLike[str], log: Log = log_stderr) -> docker.DockerClient:
    """The engine, started by docker/engine (as root: installed and started) when it is not running."""
    try:
        return client()
    except DockerEnvError:
        _script(Path(repo_root), "engine", log)
        return client()


def ensure_base_image(repo_root: str | os.PathLike[str], log: Log = log_stderr) -> None:
    """debian:bookworm-slim, pulled or built offline by docker/base-image when absent."""
    c = ensure_engine(repo_root, log)
    try:
        c.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        _script(Path(repo_root), "base-image", log)


def _dockerignore(root: Path) -> list[str]:
    f = root / ".dockerignore"
    if not f.exists():
        return []
    lines = (ln.strip() for ln in f.read_text().splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def context_hash(context: str | os.PathLike[str], dockerfile: str = DOCKERFILE, base: str = "") -> str:
    """Hash of what a build would see: the files the SDK sends (.dockerignore applied, the same
    function the SDK uses), their modes and contents, plus the base image id."""
    root = Path(context)
    h = hashlib.sha256(base.encode())
    for rel in sorted(exclude_paths(str(root), _dockerignore(root), dockerfile=dockerfile)):
        p = root / rel
        if p.is_symlink():
            h.update(f"L {rel} {os.readlink(p)}\n".encode())
        elif p.is_file():
            h.update(f"F {rel} {p.stat().st_mode & 0o777:o}\n".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:32]


def build_image(
    context: str | os.PathLike[str],
    tag: str,
    dockerfile: str = "Dockerfile",
    log: Log = log_stderr,
    labels: dict[str, str] | None = None,
) -> str:
    """Build an image (any context: the echoconf image, a user's server); returns the tag.
    The build output goes to `log`, one line at a time; DockerEnvError with its tail on failure."""
    c = client(timeout=1800)
    tail: list[str] = []
    start = time.monotonic()
    log(f"building {tag} from {context} ({dockerfile})")
    try:
        for chunk in c.api.build(
            path=str(context), dockerfile=dockerfile, tag=tag, rm=True, forcerm=True,
            labels=labels or {}, decode=True,
        ):
            if "error" in chunk:
                raise DockerEnvError(f"building {tag} failed: {chunk['error'].strip()}\n" + "\n".join(tail[-20:]))
            text = chunk.get("stream", "")
            for line in text.splitlines():
                if line.strip():
                    tail.append(line)
                    if line.startswith(("Step ", "Successfully", "WARNING")):
                        log(f"  {line}")
    except docker.errors.APIError as e:
        raise DockerEnvError(f"building {tag} failed: {e}") from e
    log(f"built {tag} in {time.monotonic() - start:.1f}s")
    return tag


def ensure_images(
    repo_root: str | os.PathLike[str], tag: str = IMAGE, log: Log = log_stderr, force: bool = False
) -> str:
    """The echoconf image (reference and broken servers + harness), built when missing or stale
    (its label records the hash of the build context and base image). Starts the engine and
    makes the base image when needed. Returns the image reference to run."""
    root = Path(repo_root).resolve()
    c = ensure_engine(root, log)
    ensure_base_image(root, log)
    base_id = c.images.get(BASE_IMAGE).id
    want = context_hash(root, DOCKERFILE, base_id)
    if not force:
        try:
            have = (c.images.get(tag).labels or {}).get(CONTEXT_LABEL)
            if have == want:
                log(f"{tag} is up to date")
                return tag
            log(f"{tag} is stale: rebuilding")
        except docker.errors.ImageNotFound:
            log(f"{tag} is absent: building")
    return build_image(root, tag, DOCKERFILE, log, labels={CONTEXT_LABEL: want})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m echoconf.images REPO_ROOT", file=sys.stderr)
        return 2
    try:
        ensure_images(args[0])
    except DockerEnvError as e:
        print(f"echoconf.images: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
