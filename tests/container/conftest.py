"""Images built and run for real, offline: podman/buildah on a Debian base made from Debian packages.

There is no registry here, so every image is built `FROM` a local base: `localhost/debian-python:bookworm`,
made once by mmdebstrap from Debian's own packages (python3, python3-venv) and kept in podman's storage,
so later runs start at once. Builds use buildah's layer cache: only the layers whose inputs changed are
rebuilt. pip inside a build reaches the package index through the host's pip configuration and CA
certificates, mounted read-only. `scripts/dev test` installs the Debian packages these tests need.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO

DEBIAN_BASE = "localhost/debian-python:bookworm"
DEBIAN_JAVA_BASE = "localhost/debian-python-java:bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
TOOLS = {"podman": "podman", "buildah": "buildah", "mmdebstrap": "mmdebstrap", "runc": "runc"}
RUNC = "/usr/sbin/runc"  # crun refuses this machine kind's hybrid cgroups; runc runs
# Read-only mounts that let pip inside a build reach the index exactly as it does on the host.
HOST_PIP_FILES = ("/etc/pip.conf", "/root/.config/pip/pip.conf", "/etc/ssl/certs", "/opt/wheels", "/opt/pypi")
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
"""


@dataclass
class Podman:
    """podman and buildah with this machine's configuration (cgroupfs, runc, no default ulimits)."""

    conf: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        import os

        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def run(self, *args: str, timeout: float = 120, check: bool = True, tool: str = "podman",
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [tool, *(["--runtime", RUNC] if tool == "podman" else []), *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            output = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            pytest.fail(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{output}")
        return proc

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def size_bytes(self, image: str) -> int:
        return int(self.run("image", "inspect", image, "--format", "{{.Size}}").stdout.strip())

    def build(
        self, context: Path, tag: str, *, containerfile: Path | None = None,
        build_args: dict[str, str] | None = None, timeout: float = 1800,
    ) -> float:
        """`buildah bud` with the layer cache; returns the seconds it took."""
        args = ["bud", "--isolation", "chroot", "--network", "host", "--layers", "--format", "docker",
                "--runtime", RUNC, "-t", tag]
        for path in HOST_PIP_FILES:
            if Path(path).exists():
                args += ["-v", f"{path}:{path}:ro"]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        if containerfile is not None:
            args += ["-f", str(containerfile)]
        started = time.monotonic()
        self.run(*args, str(context), timeout=timeout, tool="buildah")
        seconds = time.monotonic() - started
        self.timings[tag] = seconds
        return seconds


def missing_tools() -> list[str]:
    missing = [pkg for name, pkg in TOOLS.items() if shutil.which(name) is None]
    if not Path(RUNC).exists() and "runc" not in missing:
        missing.append("runc")
    return missing


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    missing = missing_tools()
    if missing:
        pytest.fail(
            "the container tests need Debian's " + " ".join(missing)
            + ": sudo apt-get install podman buildah runc mmdebstrap (scripts/dev test installs them)"
        )
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return Podman(conf)


def debian_image(podman: Podman, tag: str, packages: tuple[str, ...], work: Path) -> str:
    """A base image made by mmdebstrap from Debian bookworm's packages, once; reused from podman's storage."""
    if not podman.exists(tag):
        tar = work / "rootfs.tar"
        started = time.monotonic()
        proc = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(packages), "bookworm", str(tar)],
            capture_output=True, text=True, timeout=1200,
        )
        if proc.returncode != 0:
            pytest.fail(f"mmdebstrap failed:\n{proc.stderr[-3000:]}")
        podman.run("import", str(tar), tag, timeout=300)
        tar.unlink()
        podman.timings[tag] = time.monotonic() - started
    return tag


@pytest.fixture(scope="session")
def debian_base(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`localhost/debian-python:bookworm`: Debian 12's Python 3.11 with venv."""
    return debian_image(podman, DEBIAN_BASE, DEBIAN_PACKAGES, tmp_path_factory.mktemp("rootfs"))


@pytest.fixture(scope="session")
def debian_java_base(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same with Java 17, which TorchServe's frontend runs on."""
    return debian_image(podman, DEBIAN_JAVA_BASE, (*DEBIAN_PACKAGES, "openjdk-17-jre-headless"),
                        tmp_path_factory.mktemp("rootfs"))


@dataclass
class Container:
    """A detached container; its logs are kept for failure messages."""

    podman: Podman
    name: str

    def logs(self) -> str:
        proc = self.podman.run("logs", self.name, check=False)
        return (proc.stdout + proc.stderr)[-6000:]

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self.podman.run("exec", self.name, *cmd, check=False)

    def running(self) -> bool:
        proc = self.podman.run("inspect", self.name, "--format", "{{.State.Running}}", check=False)
        return proc.stdout.strip() == "true"

    def stop(self) -> None:
        self.podman.run("rm", "-f", "-t", "10", self.name, check=False, timeout=60)


@pytest.fixture
def containers(podman: Podman) -> Iterator[list[Container]]:
    """Containers a test starts, always removed afterwards."""
    started: list[Container] = []
    yield started
    for container in started:
        container.stop()


def start(podman: Podman, started: list[Container], image: str, args: Sequence[str],
          env: dict[str, str], *, name: str, volumes: Sequence[str] = (), ports: Sequence[str] = ()) -> Container:
    """`podman run -d`: on the host's network (servers listen on its loopback), or, with `ports`
    (`127.0.0.1:HOST:CONTAINER`), in a network of its own with those ports published."""
    cmd = ["run", "-d", "--name", name]
    cmd += [arg for port in ports for arg in ("-p", port)] if ports else ["--network", "host"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    for volume in volumes:
        cmd += ["-v", volume]
    podman.run(*cmd, image, *args)
    container = Container(podman, name)
    started.append(container)
    return container


__all__ = ["REPO", "Container", "Podman", "start"]
