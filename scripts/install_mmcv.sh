#!/usr/bin/env bash
# Build mmcv 2.1.0 with its compiled ops from the PyPI sdist and install it into the venv.
# Why a script: PyPI has no cp311 wheel, plain `pip install mmcv==2.1.0` fails on pkg_resources
# (setuptools>=81 in the isolated build env), and a build WITH isolation silently yields a wheel
# without `mmcv._ext` (torch is absent from the build env). So: venv's setuptools<81, no isolation,
# and a check that `_ext` really is there. The built wheel is kept in a wheelhouse outside the
# repository so a second clone on the same machine does not rebuild it (~9 min on 2 cores).
set -euo pipefail
bin="$1"                                   # the venv's bin/ folder
wheelhouse="${2:-$HOME/.cache/diffact/wheels}"
mkdir -p "$wheelhouse"
if "$bin/python" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  echo "mmcv 2.1.0 with ops already installed"; exit 0
fi
wheel=$(ls "$wheelhouse"/mmcv-2.1.0-cp311-cp311-linux_*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "building mmcv 2.1.0 with ops from source (about 9 minutes on 2 cores)"
  PATH="$bin:$PATH" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
    "$bin/pip" wheel --no-deps --no-build-isolation mmcv==2.1.0 -w "$wheelhouse"
  wheel=$(ls "$wheelhouse"/mmcv-2.1.0-cp311-cp311-linux_*.whl | head -n1)
fi
"$bin/pip" install --no-deps "$wheel"
"$bin/python" -c "import mmcv, mmcv._ext; print('mmcv', mmcv.__version__, 'with compiled ops')"
