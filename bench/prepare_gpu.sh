#!/usr/bin/env bash
# Prepare what bench/run_gpu.sh needs on a lent GPU machine (see docs/benchmarks.md), here,
# before the first device call: that machine has PyTorch, timm, OpenCV, SciPy, numba and
# scikit-image (Python 3.12) but none of the explanation libraries, and no data.
#   .whl/      wheels of the missing packages, the versions of this .venv, and Ray's core
#              (ray-core.tar.xz: Ray's wheel less Java, its libraries and web UI, binaries
#              stripped - 25 MB instead of 79, which the 64 MiB a device call carries needs)
#   .devdata/  16 COVID-QU-Ex Val cases per class, in the dataset's layout
# Both are git-ignored and travel only when named in the device call's `carry`:
#   carry [".whl", ".devdata"], command "bash bench/run_gpu.sh [tests] [explain] [metrics]"
# .devdata/ is a working copy for that one machine, never committed (read data in place
# everywhere else). pydicom-data (56 MB) is left out: the tests using its radiograph fail
# there, which run_gpu.sh's log shows and which says nothing about the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "run 'bash scripts/test.sh' once first (it creates .venv)"; exit 1; }

PACKAGES="lime shap slicer zennit captum grad-cam ttach pydicom sqlite-utils sqlite-fts4
  click-default-group krippendorff pycocotools jsonschema jsonschema-specifications referencing
  rpds-py confusable-homoglyphs"
rm -rf .whl && mkdir -p .whl
for name in $PACKAGES; do
  pinned="$name==$("$PY" -c "from importlib.metadata import version; print(version('$name'))")"
  # binary wheels for the device's CPython 3.12; pure-Python sdists (lime) built here
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$pinned" 2>/dev/null \
    || "$PY" -m pip wheel -q --no-deps -w .whl "$pinned"
done

DATA=$("$PY" -c "from cxrxai.environment import data_root; print(data_root())")
rm -rf .devdata
for class_name in COVID-19 Non-COVID Normal; do
  source_dir="$DATA/covid-qu-ex/Val/$class_name"
  [ -d "$source_dir/images" ] || { echo "no COVID-QU-Ex at $DATA (set CXRXAI_DATA)"; exit 1; }
  for sub in images "infection masks" "lung masks"; do
    [ -d "$source_dir/$sub" ] && mkdir -p ".devdata/covid-qu-ex/Val/$class_name/$sub"
  done
  # names hold spaces ("non_COVID (4959).png"): one per line, never word-split
  ls "$source_dir/images" | sort | head -n "${DEVDATA_PER_CLASS:-16}" | while IFS= read -r image; do
    for sub in images "infection masks" "lung masks"; do
      if [ -f "$source_dir/$sub/$image" ]; then
        cp "$source_dir/$sub/$image" ".devdata/covid-qu-ex/Val/$class_name/$sub/"
      fi
    done
  done
done
# Ray for the engine benchmark, cut to what Ray Core needs
RAY=$("$PY" -c "from importlib.metadata import version; print(version('ray'))")
work=$(mktemp -d)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d "$work" "ray==$RAY"
(cd "$work" && unzip -q ray-*.whl && rm -rf ray-*.whl ray/jars ray/rllib ray/serve ray/tune \
    ray/train ray/llm ray/data ray/dashboard/client/build \
  && strip --strip-unneeded ray/core/src/ray/gcs/gcs_server ray/core/src/ray/raylet/raylet \
    ray/_raylet.so \
  && tar cJf "$OLDPWD/.whl/ray-core.tar.xz" ray ray-*.dist-info)
rm -rf "$work"
du -sh .whl .devdata
