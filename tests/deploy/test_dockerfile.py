"""The app image's Dockerfile, checked structurally (tests/container builds and runs the image itself)."""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from pathlib import Path

import yaml

from tests.deploy.conftest import REPO

TORCHSERVE_DOCKERFILE = REPO / "deploy" / "images" / "torchserve-sdxl" / "Dockerfile"
TORCHSERVE_CONTEXT = REPO / "deploy" / "torchserve"


def _instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buf = f"{buf} {line[:-1]}" if line.endswith("\\") else f"{buf} {line}"
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def _stages(path: Path = REPO / "Dockerfile") -> list[list[tuple[str, str]]]:
    """Instructions by stage; a FROM's `${ARG}` is replaced by the ARG's default declared before it."""
    stages: list[list[tuple[str, str]]] = []
    args: dict[str, str] = {}
    for word, rest in _instructions(path):
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if word == "FROM":
            for name, default in args.items():
                rest = rest.replace("${" + name + "}", default).replace("$" + name, default)
            stages.append([])
        stages[-1].append((word, rest))
    return stages


def dockerfile_problems(text: str) -> list[str]:
    """What keeps the app image from serving every room (issue 18: documents failed in the cluster)."""
    runs = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    problems = []
    if ".[docs]" not in runs and ".[docs," not in runs:
        problems.append("the project is installed without its `docs` extra (unstructured, PDFium)")
    if "[local]" in runs or ".[local" in runs:
        problems.append("the `local` extra (llama.cpp, ONNX model) does not belong in the cluster image")
    if "ARG BASE" not in text or "FROM ${BASE}" not in text:
        problems.append("the base image is not an `ARG BASE` (the image test builds FROM a local base)")
    return problems


def test_multi_stage_with_pinned_bases() -> None:
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), image
    final = stages[-1]
    assert any(k == "COPY" and "--from=build" in v for k, v in final), (
        "the runtime stage copies the built venv"
    )
    assert not any(k == "RUN" and "pip install" in v for k, v in final), "no build tools in the runtime stage"


def test_installs_the_project_with_docs_and_without_the_local_extra() -> None:
    runs = " ".join(v for k, v in _instructions() if k == "RUN")
    assert 'pip install ".[docs]"' in runs
    assert "[local]" not in runs and ".[local" not in runs
    assert dockerfile_problems((REPO / "Dockerfile").read_text()) == []
    docs = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["docs"]
    assert any(r.startswith("unstructured[") for r in docs) and any(r.startswith("pypdfium2") for r in docs)


def test_an_image_without_the_docs_extra_is_refused() -> None:
    """Issue 18, defect 1: `pip install .` alone left out unstructured and pypdfium2."""
    bad = (REPO / "Dockerfile").read_text().replace('".[docs]"', ".")
    assert dockerfile_problems(bad) == ["the project is installed without its `docs` extra (unstructured, PDFium)"]


def test_runs_as_non_root_with_a_healthcheck_and_chainlit_on_all_interfaces() -> None:
    final = _stages()[-1]
    users = [v for k, v in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (health,) = [v for k, v in final if k == "HEALTHCHECK"]
    assert "/healthz" in health and "--interval=" in health
    (cmd,) = [v for k, v in final if k == "CMD"]
    argv = json.loads(cmd)
    assert argv[:3] == ["python", "-m", "chainlit_app.serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and argv[argv.index("--port") + 1] == "8000"
    assert ("EXPOSE", "8000") in final


def test_copied_paths_exist_and_are_not_dockerignored() -> None:
    ignored = [
        p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"
    ]
    for k, v in _instructions():
        if k != "COPY" or "--from=" in v:
            continue
        parts = [p for p in shlex.split(v) if not p.startswith("--")]
        for src in parts[:-1]:
            assert (REPO / src).exists(), f"COPY {src}: missing"
            assert not any(
                fnmatch.fnmatch(src, pat) or src.startswith(pat.rstrip("/") + "/") for pat in ignored
            ), src
    for must in (".git", ".venv", "tests", ".env"):
        assert must in ignored


def test_torchserve_image_packages_the_handler_without_weights() -> None:
    """deploy/images/torchserve-sdxl builds on the pinned TorchServe image from deploy/torchserve."""
    stages = _stages(TORCHSERVE_DOCKERFILE)
    for stage in stages:
        assert stage[0][1].split()[0] == "pytorch/torchserve:0.12.0-gpu"
    for k, v in _instructions(TORCHSERVE_DOCKERFILE):
        if k == "COPY" and "--from=" not in v:
            for src in [p for p in shlex.split(v) if not p.startswith("--")][:-1]:
                assert (TORCHSERVE_CONTEXT / src).is_file(), f"COPY {src}: not in deploy/torchserve"
    runs = " ".join(v for k, v in _instructions(TORCHSERVE_DOCKERFILE) if k == "RUN")
    assert "torch-model-archiver --model-name sdxl_turbo" in runs and "--extra-files" not in runs
    assert [v for k, v in stages[-1] if k == "USER"][-1] == "model-server"


def test_torchserve_handler_reads_the_weights_where_the_chart_mounts_them(renders: dict) -> None:
    config = yaml.safe_load((TORCHSERVE_CONTEXT / "model-config.yaml").read_text())
    for (env, app), r in renders.items():
        if app != "torchserve-sdxl":
            continue
        pod = r.one("Deployment")["spec"]["template"]["spec"]
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "model-cache")
        cache_name = pod["initContainers"][0]["args"][0]
        assert config["handler"]["model_path"] == f"{mount['mountPath']}/{cache_name}", env


def test_the_build_stage_copies_every_package_the_project_installs() -> None:
    """`pip install .` in the image only sees what the build stage copied: a new top-level package in
    pyproject.toml must be copied too, or the image silently ships without it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    build = _stages()[0]
    copied = {shlex.split(v)[0].rstrip("/") for k, v in build if k == "COPY" and "--from=" not in v}
    assert packages <= copied, f"not copied into the build stage: {sorted(packages - copied)}"
    assert {"pyproject.toml"} <= {p for v in (v for k, v in build if k == "COPY") for p in shlex.split(v)}
