#!/usr/bin/env bash
# The container image's build steps, in one script that the Dockerfile RUNs and that
# tests/deploy/test_deploy_image.py runs in a fresh folder (no Docker engine is needed to test it).
#
#   scripts/image_build.sh [install|index|all]      (default: all)
#
# install  creates the virtualenv QA_IMAGE_VENV, installs the pinned CPU torch first (an unpinned
#          torch, asked for by sentence-transformers, would pull a CUDA build of several GB), then
#          the project itself (a real, non-editable install with its dependencies), then `pip check`.
# index    copies the data folder to QA_IMAGE_APP/data, builds the index into QA_IMAGE_APP/index,
#          refuses FAQ or data files with warnings (an image must not ship a half-loaded FAQ),
#          checks that a second `qa build` finds the index current (so the server, which only
#          writes when it builds, never writes at run time), and leaves both folders read-only
#          for everyone but their owner.
#
# Environment (all optional):
#   QA_IMAGE_SRC        the project's sources: pyproject.toml, README.md, qa/, server/, data/
#                       (default: this script's repository)
#   QA_IMAGE_VENV       the virtualenv to create (default /opt/venv)
#   QA_IMAGE_APP        where data/ and index/ go (default /app)
#   QA_IMAGE_PYTHON     the interpreter that creates the virtualenv (default python3)
#   TORCH_INDEX_URL     index that serves the CPU build of torch (the Dockerfile passes
#                       PyTorch's CPU wheel index); empty: pip's configured index
#   QA_IMAGE_PIP_ARGS   extra pip arguments, word-split (the test passes --no-index)
#   QA_IMAGE_BASE_SITE  a site-packages folder whose packages count as installed (a .pth line):
#                       the test uses it to reuse the dev virtualenv's dependencies and still
#                       install the project for real; never set in the Dockerfile
#   QA_IMAGE_ALLOW_WARNINGS=1   build the index even when the data has warnings
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "${QA_IMAGE_SRC:-$here/..}" && pwd)"
venv="${QA_IMAGE_VENV:-/opt/venv}"
app="${QA_IMAGE_APP:-/app}"
python="${QA_IMAGE_PYTHON:-python3}"
torch_spec="torch==2.13.0"  # the same pin as pyproject.toml and the Makefile
read -r -a pip_args <<< "${QA_IMAGE_PIP_ARGS:-}"
step="${1:-all}"

say() { printf 'image_build: %s\n' "$*"; }

pip_install() {
  "$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --no-input \
    --progress-bar off ${pip_args[@]+"${pip_args[@]}"} "$@"
}

do_install() {
  say "virtualenv $venv"
  if [[ -n "${QA_IMAGE_BASE_SITE:-}" ]]; then
    # pip and setuptools come from the base folder too (a fresh virtualenv's older setuptools would hide it)
    "$python" -m venv --without-pip "$venv"
    purelib="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    printf '%s\n' "$QA_IMAGE_BASE_SITE" > "$purelib/_image_build_base_site.pth"
  else
    "$python" -m venv "$venv"
  fi
  say "installing $torch_spec (CPU)"
  if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    pip_install --index-url "$TORCH_INDEX_URL" "$torch_spec"
  else
    pip_install "$torch_spec"
  fi
  # pip builds a source tree in place (build/, *.egg-info): build from a copy, never in $src.
  tree="$(mktemp -d)"
  trap 'rm -rf "$tree"' EXIT
  cp -R "$src/pyproject.toml" "$src/README.md" "$src/qa" "$src/server" "$tree/"
  find "$tree" -name __pycache__ -type d -prune -exec rm -rf {} +
  say "installing the project from $src"
  pip_install "$tree"
  if [[ -z "${QA_IMAGE_BASE_SITE:-}" ]]; then  # with a base folder it would judge that folder, not the image
    "$venv/bin/python" -m pip check --disable-pip-version-check
  fi
  rm -rf "$tree"
  trap - EXIT
}

do_index() {
  say "data and index in $app"
  mkdir -p "$app"
  rm -rf "$app/data" "$app/index"
  cp -R "$src/data" "$app/data"
  find "$app/data" -name __pycache__ -type d -prune -exec rm -rf {} +
  export QA_DATA_DIR="$app/data" QA_INDEX_DIR="$app/index"
  unset QA_FAQ_DIR QA_MODEL
  if [[ "${QA_IMAGE_ALLOW_WARNINGS:-0}" != 1 ]]; then
    "$venv/bin/python" - <<'EOF'
import sys

from qa.knowledge import KnowledgeBase
from qa.settings import Settings

s = Settings()
kb = KnowledgeBase.load(s.data_dir, s.faq_dir)
if kb.warnings:
    print("image_build: the FAQ or data files have problems (QA_IMAGE_ALLOW_WARNINGS=1 to build anyway):",
          *[f"  {w}" for w in kb.warnings], sep="\n", file=sys.stderr)
    sys.exit(1)
print(f"image_build: {len(kb.entries)} entries, no warnings")
EOF
  fi
  "$venv/bin/qa" build --force
  out="$("$venv/bin/qa" build)"
  printf '%s\n' "$out"
  if [[ "$out" != *"already current"* ]]; then
    say "a second 'qa build' did not find the index current: the server would rebuild it at start-up" >&2
    exit 1
  fi
  chmod -R a+rX,go-w "$app/data" "$app/index"
}

case "$step" in
  install) do_install ;;
  index) do_index ;;
  all) do_install; do_index ;;
  *) echo "usage: $0 [install|index|all]" >&2; exit 2 ;;
esac
say "done"
