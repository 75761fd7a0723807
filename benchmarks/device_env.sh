# Sourced (repo root) by the scripts of a lent GPU machine (gpu_check.sh, plateau_gpu.sh): PyAV and scikit-video,
# which the device image lacks, from the wheels carried in .whl/ (gpu_check.sh's header says how to fetch them),
# the package from src/, and $PY. Ends the calling script at once when torch or PyAV cannot be imported: a call
# that would fail part by part is device time lost.
PY=${PY:-python3}
command -v "$PY" >/dev/null || PY=python
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
$PY -c "import torch, av" || { echo "torch or PyAV cannot be imported: carry .whl (benchmarks/gpu_check.sh)"; exit 1; }
