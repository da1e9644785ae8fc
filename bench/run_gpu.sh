#!/usr/bin/env bash
# GPU measurements on a lent device machine (see docs/benchmarks.md; bench/prepare_gpu.sh
# builds the two folders below first): its image has torch,
# timm, OpenCV, SciPy and scikit-image; the explanation libraries travel as wheels in
# .whl/, a subset of COVID-QU-Ex Val in .devdata/ (both ignored by git, never committed).
# Usage there: bash bench/run_gpu.sh [tests] [explain] [metrics] [engine]   (logs under $OUT;
# no argument: tests explain metrics)
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
[ -f .whl/ray-core.tar.xz ] && tar xJf .whl/ray-core.tar.xz -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 CXRXAI_DATA=$PWD/.devdata
export CXRXAI_CACHE=/tmp/heatmap-cache RAY_OBJECT_STORE_ALLOW_SLOW_STORAGE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" \
  | tee -a "$OUT/gpu.txt"
run() { echo "== $*"; timeout "${STEP_TIMEOUT:-240}" "$@"; }
case " ${*:-tests explain metrics} " in *" tests "*)
  # pydicom-data's radiograph (56 MB) does not travel: its LRP conservation cases are left out
  run python3 -m pytest -q -p no:cacheprovider -k "not real-xray" tests/explain tests/metrics \
    tests/test_checkpoint.py tests/test_fold.py tests/test_parallel.py 2>&1 | tee "$OUT/tests.log" | tail -5 ;; esac
case " ${*:-tests explain metrics} " in *" explain "*)
  run python3 -m bench.bench_explain --images 2 --device cuda 2>&1 | tee "$OUT/bench_explain.log" \
    | grep -v "it/s" | tail -40 ;; esac
case " ${*:-tests explain metrics} " in *" metrics "*)
  run python3 -m bench.bench_metrics --device cuda 2>&1 | tee "$OUT/bench_metrics.log" | tail -20 ;; esac
case " ${*:-tests explain metrics} " in *" engine "*)
  run python3 -m bench.bench_engine --device cuda --methods gradcam,lime,shap,lrp \
    --per-class 16 --workers 1,2,4 2>&1 | tee "$OUT/bench_engine_gpu.log" | grep -v "it/s" | tail -12
  run python3 -m bench.bench_engine --device cpu --methods gradcam,lrp --per-class 16 \
    --workers 1,2,4,8 2>&1 | tee "$OUT/bench_engine_cpu.log" | grep -v "it/s" | tail -12 ;; esac
