"""Build and run the project's images without a Docker daemon: buildah (vfs storage, chroot
isolation), as the image test stage in CI does. See scripts/images/build.sh."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PREFIX, TAG = "dev.local/sentiops", "dev"
STORE = ["--storage-driver", "vfs"]


def image(name: str) -> str:
    return f"{PREFIX}/{name}:{TAG}"


def buildah(*args: str, timeout: float = 600, check: bool = True) -> str:
    proc = subprocess.run(
        ["buildah", *STORE, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed: {proc.stderr[-3000:]}")
    return proc.stdout.strip()


_BUILT: list[bool] = []


def build(*names: str) -> None:
    """Build (or find up to date) the images with the project's own script: every image at
    the first call of the session (their builds overlap), so `names` only documents which
    image the caller needs."""
    if _BUILT:
        return
    subprocess.run(
        [str(REPO / "scripts" / "images" / "build.sh")],
        check=True,
        timeout=3600,
        env={**os.environ, "BUILDER": "buildah", "IMAGE_PREFIX": PREFIX, "IMAGE_TAG": TAG},
    )
    _BUILT.append(True)


def config(name: str) -> dict:
    import json

    return dict(json.loads(buildah("inspect", "--type", "image", image(name)))["OCIv1"]["config"])


@dataclass
class Container:
    """A working container of an image: run commands in it, see what they changed."""

    name: str
    id: str

    def run_args(self, cmd: list[str], mounts: dict[Path, str], env: dict[str, str]) -> list[str]:
        args = ["buildah", *STORE, "run", "--isolation", "chroot", "--network", "host"]
        for host, target in mounts.items():
            args += ["-v", f"{host}:{target}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        return [*args, self.id, "--", *cmd]

    def run(
        self,
        cmd: list[str],
        mounts: dict[Path, str] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.run_args(cmd, mounts or {}, env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @contextlib.contextmanager
    def serve(
        self, cmd: list[str], mounts: dict[Path, str], log: Path, env: dict[str, str] | None = None
    ) -> Iterator[subprocess.Popen[bytes]]:
        """Run a server in the container in the background (stopped at the end)."""
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                self.run_args(cmd, mounts, env or {}),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield proc
        finally:
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def changed_outside_tmp(self, since: float) -> list[str]:
        """Files the container's processes wrote anywhere but /tmp (and mount points)."""
        root = Path(buildah("mount", self.id))
        try:
            out = []
            for dirpath, dirnames, filenames in os.walk(root):
                rel = Path(dirpath).relative_to(root)
                if rel.parts[:1] in (("tmp",), ("proc",), ("sys",), ("dev",), ("run",)):
                    dirnames[:] = []
                    continue
                for f in filenames:
                    p = Path(dirpath) / f
                    with contextlib.suppress(OSError):
                        if not p.is_symlink() and p.stat().st_mtime > since:
                            out.append(str(p.relative_to(root)))
            return sorted(out)
        finally:
            buildah("umount", self.id, check=False)


_WORKING: dict[str, Container] = {}


@contextlib.contextmanager
def container(name: str) -> Iterator[Container]:
    """The test session's one working container of `name`'s image. With vfs storage every
    `buildah from` copies the whole image (2 GB: ~30 s), so the tests of an image share one;
    each test checks what changed outside /tmp since its own start. `remove_containers` ends
    them (tests/images/conftest.py, at the end of the session)."""
    if name not in _WORKING:
        _WORKING[name] = Container(name, buildah("from", "--quiet", image(name)))
    yield _WORKING[name]


def remove_containers() -> None:
    while _WORKING:
        _, c = _WORKING.popitem()
        buildah("rm", c.id, check=False)


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            s.settimeout(0.3)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"port {port} not open after {timeout}s:\n{log.read_text()[-3000:]}")


def hygiene(name: str, package: str, python: str = "python3") -> dict[str, object]:
    """What an image must not hold, read inside it: pip, a compiler, test folders next to the
    installed `package`, a pip cache; plus pydantic's major version and which of the other
    images' stacks (kfp, kserve, mlflow, optuna, alibi_detect) are importable."""
    import json

    script = (
        "import importlib.util as u, json, pathlib, shutil\n"
        f"import {package}\n"
        f"site = pathlib.Path({package}.__file__).parents[1]\n"
        "pyd = u.find_spec('pydantic')\n"
        "print(json.dumps({'pip': u.find_spec('pip') is not None,\n"
        "  'compilers': [c for c in ('gcc', 'cc', 'g++', 'make') if shutil.which(c)],\n"
        "  'test_data': sorted(str(p) for p in site.glob('tests'))\n"
        "    + sorted(str(p) for p in pathlib.Path('/').glob('root/.cache/pip')),\n"
        "  'pydantic': __import__('pydantic').VERSION.split('.')[0] if pyd else None,\n"
        "  'stacks': [m for m in ('kfp', 'kserve', 'mlflow', 'optuna', 'alibi_detect')\n"
        "             if u.find_spec(m)]}))\n"
    )
    with container(name) as c:
        proc = c.run([python, "-c", script])
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
