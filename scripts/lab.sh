#!/usr/bin/env bash
# JupyterLab on this repository: `make lab` runs it, tests/test_lab.py starts it through `make -n lab`.
#   bash scripts/lab.sh BIN [jupyter lab arguments...]     (BIN: the venv's bin folder)
# Rooted at the repository, with config/jupyter/ first on JUPYTER_CONFIG_PATH (notebooks/*.py open as notebooks,
# kernels start in the repository like the workflow's papermill runs); the user's ~/.jupyter is still read.
set -euo pipefail
bin=$1
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export JUPYTER_CONFIG_PATH="$repo/config/jupyter${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"
# Jupyter refuses to start as root unless told; containers and CI run as root.
if [ "$(id -u)" = 0 ]; then
  set -- --allow-root "$@"
fi
exec "$bin/jupyter" lab --ServerApp.root_dir="$repo" "$@"
