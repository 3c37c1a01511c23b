"""Weight caching: the fill-cache script (model pods' init container and the fill-node-cache
WorkflowTemplate) run for real with bash. Only the S3 transport is replaced: a `fake_s3` shim named
`aws` serves `aws s3 cp --recursive` from a local folder and counts downloads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DEPLOY

SCRIPT = DEPLOY / "charts" / "model-server" / "files" / "fill-cache.sh"

FAKE_AWS = """#!/bin/bash
# fake_s3: `aws configure set ...` is a no-op; `aws s3 cp [--recursive] [flags] s3://b/key DEST` copies
# from $FAKE_S3_ROOT/b/key (DEST `-`: stdout); each recursive copy appends to downloads.log.
set -euo pipefail
[ "$1" = configure ] && exit 0
recursive=no; args=()
for a in "$@"; do case "$a" in --recursive) recursive=yes;; --*|s3|cp) ;; *) args+=("$a");; esac; done
src="$FAKE_S3_ROOT/${args[0]#s3://}"; dest="${args[1]}"
[ "${FAKE_S3_DOWN:-no}" = yes ] && { echo "Could not connect to the endpoint URL" >&2; exit 255; }
if [ "$recursive" = yes ]; then
  [ -d "$src" ] || exit 0   # like S3: an absent prefix copies nothing
  sleep "${FAKE_S3_DELAY:-0}"
  mkdir -p "$dest"; cp -R "$src/." "$dest/"
  echo "${args[0]}" >> "$FAKE_S3_ROOT/downloads.log"
else
  [ -f "$src" ] || { echo "An error occurred (404) when calling the HeadObject operation" >&2; exit 1; }
  if [ "$dest" = - ]; then cat "$src"; else cp "$src" "$dest"; fi
fi
"""


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    if shutil.which("bash") is None or shutil.which("sha256sum") is None:
        pytest.skip("needs bash and coreutils")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(FAKE_AWS)
    aws.chmod(aws.stat().st_mode | stat.S_IEXEC)
    s3 = tmp_path / "s3"
    model = s3 / "bucket" / "models" / "tiny" / "abc123"
    (model / "sub").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(os.urandom(256 * 1024))
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "sub" / "tokenizer.json").write_text("{}")
    lines = []
    for f in sorted(p for p in model.rglob("*") if p.is_file()):
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(model).as_posix()}")
    (model / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")
    return {"bin": bin_dir, "s3": s3, "model": model, "cache": tmp_path / "cache"}


def _fill(
    world: dict[str, Path],
    *extra_env: tuple[str, str],
    name: str = "tiny",
    uri: str = "s3://bucket/models/tiny/abc123",
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{world['bin']}:{os.environ['PATH']}",
        "CACHE_ROOT": str(world["cache"]),
        "FAKE_S3_ROOT": str(world["s3"]),
        "WAIT_TIMEOUT_SECONDS": "60",
        "POLL_SECONDS": "0.2",
        "HOME": str(world["cache"].parent),
        **dict(extra_env),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), name, uri], env=env, capture_output=True, text=True, timeout=120
    )


def _downloads(world: dict[str, Path]) -> int:
    log = world["s3"] / "downloads.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_miss_downloads_verifies_and_marks_then_hits(world: dict[str, Path]) -> None:
    proc = _fill(world)
    assert proc.returncode == 0, proc.stderr
    entry = world["cache"] / "tiny"
    assert (entry / "model.safetensors").read_bytes() == (world["model"] / "model.safetensors").read_bytes()
    manifest_digest = hashlib.sha256((entry / "MANIFEST.sha256").read_bytes()).hexdigest()
    assert (entry / ".complete").read_text().split() == [manifest_digest, "s3://bucket/models/tiny/abc123"]
    assert not list(world["cache"].glob(".tiny.*")), "lock and partial download are cleaned up"
    again = _fill(world)
    assert again.returncode == 0 and "cache hit" in again.stderr
    assert _downloads(world) == 1


def test_a_new_revision_replaces_the_cached_one(world: dict[str, Path]) -> None:
    assert _fill(world).returncode == 0
    new = world["model"].parent / "def456"
    shutil.copytree(world["model"], new)
    _rewrite(new, "config.json", '{"hidden_size": 16}')
    proc = _fill(world, uri="s3://bucket/models/tiny/def456")
    assert proc.returncode == 0, proc.stderr
    assert (world["cache"] / "tiny" / "config.json").read_text() == '{"hidden_size": 16}'
    assert (world["cache"] / "tiny" / ".complete").read_text().split()[1] == "s3://bucket/models/tiny/def456"
    assert _downloads(world) == 2


def _rewrite(model: Path, name: str, text: str) -> None:
    (model / name).write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    lines = (model / "MANIFEST.sha256").read_text().splitlines()
    lines = [f"{digest}  {name}" if line.endswith(f"  {name}") else line for line in lines]
    (model / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")


def test_mirroring_the_same_prefix_again_refills(world: dict[str, Path]) -> None:
    assert _fill(world).returncode == 0
    _rewrite(world["model"], "config.json", '{"hidden_size": 32}')
    proc = _fill(world)
    assert proc.returncode == 0, proc.stderr
    assert "the mirror changed" in proc.stderr
    assert (world["cache"] / "tiny" / "config.json").read_text() == '{"hidden_size": 32}'
    assert _downloads(world) == 2


def test_an_unreachable_s3_keeps_serving_the_verified_cache(world: dict[str, Path]) -> None:
    assert _fill(world).returncode == 0
    proc = _fill(world, ("FAKE_S3_DOWN", "yes"))
    assert proc.returncode == 0, proc.stderr
    assert "using the verified cache" in proc.stderr and "cache hit" in proc.stderr


def test_corrupt_download_leaves_no_marker(world: dict[str, Path]) -> None:
    with (world["model"] / "model.safetensors").open("r+b") as f:
        f.write(b"bitrot")
    proc = _fill(world)
    assert proc.returncode != 0
    assert "FAILED" in proc.stderr or "did NOT match" in proc.stderr
    assert not (world["cache"] / "tiny").exists()
    assert not list(world["cache"].glob(".tiny.*")), "a failed fill releases its lock"


def test_missing_manifest_is_refused(world: dict[str, Path]) -> None:
    (world["model"] / "MANIFEST.sha256").unlink()
    proc = _fill(world)
    assert proc.returncode != 0 and "MANIFEST.sha256 missing" in proc.stderr
    assert not (world["cache"] / "tiny" / ".complete").exists()


def test_concurrent_fillers_download_once(world: dict[str, Path]) -> None:
    results: list[subprocess.CompletedProcess[str]] = []

    def run() -> None:
        results.append(_fill(world, ("FAKE_S3_DELAY", "2")))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert _downloads(world) == 1
    assert any("cache hit" in r.stderr for r in results)


def test_wait_only_mode_times_out_without_a_marker(world: dict[str, Path]) -> None:
    proc = _fill(world, ("FILL_ON_MISS", "false"), ("WAIT_TIMEOUT_SECONDS", "1"))
    assert proc.returncode != 0 and "no completion marker" in proc.stderr
    assert _downloads(world) == 0


def test_the_workflow_embeds_the_same_script() -> None:
    wft = yaml.safe_load((DEPLOY / "argo-workflows" / "fill-node-cache.yaml").read_text())
    fill_one = next(t for t in wft["spec"]["templates"] if t["name"] == "fill-one")
    command = fill_one["container"]["command"]
    assert command[:2] == ["/bin/bash", "-c"]
    assert command[2] == SCRIPT.read_text(), "run python deploy/argo-workflows/embed_fill_script.py"
    cache = next(p for p in wft["spec"]["arguments"]["parameters"] if p["name"] == "cache-path")
    chart_values = yaml.safe_load((DEPLOY / "charts" / "model-server" / "values.yaml").read_text())
    assert cache["value"] == chart_values["weights"]["cache"]["hostPath"]


def test_the_mirror_uploads_the_manifest_last() -> None:
    wft = yaml.safe_load((DEPLOY / "argo-workflows" / "mirror-weights.yaml").read_text())
    upload = next(t for t in wft["spec"]["templates"] if t["name"] == "upload")["script"]["source"]
    files_at = upload.index("--exclude MANIFEST.sha256")
    manifest_at = upload.index('MANIFEST.sha256 "$dest/MANIFEST.sha256"')
    assert files_at < manifest_at
    download = next(t for t in wft["spec"]["templates"] if t["name"] == "download")["script"]["source"]
    assert "model_info(repo, revision=revision).sha" in download and "MANIFEST.sha256" in download
    subprocess.run(["bash", "-n"], input=upload, text=True, check=True)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


HUB_STUB = '''"""Stand-in for huggingface_hub's network calls: repos from $FAKE_HUB/<repo>/<commit>/."""
import os, shutil, types
from pathlib import Path

_HUB = Path(os.environ["FAKE_HUB"])


class HfApi:
    def model_info(self, repo, revision=None):
        commit = (_HUB / repo / "refs" / revision).read_text().strip()
        return types.SimpleNamespace(sha=commit)


def snapshot_download(repo, revision=None, local_dir=None, allow_patterns=None, max_workers=8):
    shutil.copytree(_HUB / repo / revision, local_dir, dirs_exist_ok=True)
    (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
    (Path(local_dir) / ".cache" / "huggingface" / "download.lock").write_text("metadata")
    return str(local_dir)
'''


def _mirror_script() -> str:
    wft = yaml.safe_load((DEPLOY / "argo-workflows" / "mirror-weights.yaml").read_text())
    source = next(t for t in wft["spec"]["templates"] if t["name"] == "download")["script"]["source"]
    return source.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]


def test_a_mirror_verifies_in_the_node_cache(world: dict[str, Path], tmp_path: Path) -> None:
    """The mirror's MANIFEST.sha256 is the format fill-cache.sh checks. The mirror's Python runs for
    real; only the hub's two network calls are served from local files (a stub module)."""
    hub = tmp_path / "hub" / "org" / "tiny-model"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (hub / commit / "sub").mkdir(parents=True)
    (hub / commit / "model.safetensors").write_bytes(os.urandom(64 * 1024))
    (hub / commit / "sub" / "tokenizer.json").write_text("{}")
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(commit)
    stubs = tmp_path / "stubs" / "huggingface_hub"
    stubs.mkdir(parents=True)
    (stubs / "__init__.py").write_text(HUB_STUB)
    script = tmp_path / "mirror.py"
    script.write_text(_mirror_script())
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": str(stubs.parent), "FAKE_HUB": str(tmp_path / "hub")}
    proc = subprocess.run(
        [sys.executable, str(script), "org/tiny-model", "main", str(out), ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    source = json.loads((out / "SOURCE.json").read_text())
    assert source["commit"] == commit and source["files"] == 2
    assert ".cache" not in (out / "MANIFEST.sha256").read_text()
    # "upload": what the upload step sends (everything but .cache/) lands under the bucket prefix
    prefix = world["s3"] / "bucket" / "models" / "org" / "tiny-model" / "main"
    shutil.copytree(out, prefix, ignore=shutil.ignore_patterns(".cache"))
    proc = _fill(world, name="tiny-model", uri="s3://bucket/models/org/tiny-model/main")
    assert proc.returncode == 0, proc.stderr
    assert (world["cache"] / "tiny-model" / "sub" / "tokenizer.json").read_text() == "{}"


@pytest.mark.parametrize("name", ["mirror-weights.yaml", "fill-node-cache.yaml"])
def test_workflow_parameters_are_declared_where_they_are_used(name: str) -> None:
    """Argo substitutes `{{inputs.parameters.x}}` / `{{workflow.parameters.x}}` at run time; a typo
    passes the CRD schema, so check every reference against the declarations."""
    wft = yaml.safe_load((DEPLOY / "argo-workflows" / name).read_text())
    declared_workflow = {p["name"] for p in wft["spec"]["arguments"]["parameters"]}
    used_anywhere = set()
    for template in wft["spec"]["templates"]:
        body = json.dumps(template)
        declared_inputs = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
        for ref in re.findall(r"\{\{inputs\.parameters\.([\w-]+)\}\}", body):
            assert ref in declared_inputs, f"{name}/{template['name']}: inputs.parameters.{ref}"
        for ref in re.findall(r"\{\{workflow\.parameters\.([\w-]+)\}\}", body):
            assert ref in declared_workflow, f"{name}/{template['name']}: workflow.parameters.{ref}"
            used_anywhere.add(ref)
        for step_group in template.get("steps", []):
            for step in step_group:
                assert step["template"] in {t["name"] for t in wft["spec"]["templates"]}
                if "{{item." in json.dumps(step):
                    assert "withParam" in step or "withItems" in step
    assert declared_workflow == used_anywhere, "every workflow parameter is used"
    assert wft["spec"]["entrypoint"] in {t["name"] for t in wft["spec"]["templates"]}
