#!/usr/bin/env bash
# Issue #20's GPU measurements in one call of a lent H100/H200 (about 7 minutes), each part under its own time
# limit and all of them under $BUDGET seconds, so that a slow part cannot take the others' results with it. The
# device returns at most 8 files: the JSONs below, and every part's log in logs.tgz (remade after each part, so a
# call cut short still returns the logs of the parts it finished). The parts, in order:
#   train_mme      mme bench train of the mme_k400_paper recipe's step (ViT-B 16x224², mask 0.7, decoder 192 x 1, MME
#                  target: traj + shape along the tracks, made in the step) at batch 32: fp32 / bf16 / fp16 eager;
#                  clips/s, MFU, each variant's peak memory (train_mme.json)
#   train_pixel    the same of videomae_k400_pixel's (mask 0.9, decoder 384 x 4, pixel target), against
#                  transformers.VideoMAEForPreTraining (train_pixel.json)
#   tests_cuda     the tests that need the GPU (-k "cuda or gpu": the CUDA training cases, NVDEC's conformance), so
#                  that they run whatever time the full suite gets at the end
#   pipeline       mme bench pipeline: worker CPU per clip (pixel, MME online, MME online with the torch-lk flow in
#                  the step, MME cached) and the cores needed to feed the fastest MME step above (pipeline.json)
#   flow           benchmarks/torch_flow_speed.py: the torch-lk flow's ms per frame pair and peak memory on the GPU
#                  by frame size and pairs per call (sizes track_in_step's chunk_px)
#   decode         benchmarks/gpu_decode.py: NVDEC through PyAV against its CPU decode, CPU and wall time per frame,
#                  and whether its frames are the CPU decode's (an optional GPU decoding backend) (decode.json)
#   runs           short ViT-B pre-training runs on generated 256² videos with $WORKERS loader workers: pixel (and
#                  again decoding on the GPU), MME online (DIS in the workers), from a track cache (mme extract),
#                  and with torch-lk in the step: clips/s and the fraction of the step spent waiting for data, each
#                  printed as its run ends (a failed run does not stop the others)
#   train_compile  train_mme again with torch.compile added (its compile time is the least predictable part,
#                  hence after the others) (train_compile.json)
#   tests          the whole test suite with the GPU visible, with what time is left
# PyAV and scikit-video are not on the device image: carry their wheels (device README), once, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 scikit-video==1.1.11
# then run (repo root):  OUT=$OUT bash benchmarks/gpu_check.sh   with carry [".whl"] and a 480 s limit. BUDGET
# (420 s) leaves a session's 15 minutes of device time room for the machine's start and one more call.
# PARTS chooses the parts (default all, in the order above).
# CPU smoke run of the script itself (tiny sizes; its times on the 2-core AMD EPYC: docs/performance.md,
# "On a GPU: one prepared call"):
#   SMOKE=1 OUT=/tmp/gpu_check bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.." || exit 1  # the repo root, wherever the script is called from
OUT=${OUT:-/tmp/gpu_check} SMOKE=${SMOKE:-0} BUDGET=${BUDGET:-420}
PARTS=${PARTS:-train_mme train_pixel tests_cuda pipeline flow decode runs train_compile tests}
mkdir -p "$OUT"
LOGS=$(mktemp -d)
source benchmarks/device_env.sh
MME="$PY -m mme.cli"
CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # the CPUs this job may use (nproc alone obeys OMP_*)
if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu PRESET=tiny IMG=64 FRAMES=4 BATCH=2 STEPS=2 WORKERS=2 VIDEO_SIZE=96 RUN_STEPS=10 TEST_WORKERS=2
  FLOW_FLAGS="--sizes 64 --pairs 1 2" DECODE_REPEAT=1
  BENCH_FLAGS="--no-peer"
else
  DEVICE=cuda PRESET=base IMG=224 FRAMES=16 BATCH=32 STEPS=10 WORKERS=$(( CORES > 3 ? CORES - 2 : 1 ))
  VIDEO_SIZE=256 RUN_STEPS=30 TEST_WORKERS=8 BENCH_FLAGS="" FLOW_FLAGS="" DECODE_REPEAT=3
fi
START=$SECONDS

part() {  # part NAME LIMIT COMMAND...: COMMAND under min(LIMIT, the time left), its output in $LOGS/NAME.log
  local name=$1 limit=$2 left=$(( BUDGET - (SECONDS - START) ))
  shift 2
  [[ " $PARTS " == *" $name "* ]] || return 0
  (( left < limit )) && limit=$left
  if (( limit < 15 )); then echo "== $name: skipped, the budget is spent"; return 1; fi
  local t0=$SECONDS
  timeout -k 10 "${limit}s" "$@" >"$LOGS/$name.log" 2>&1  # -k: a run that catches SIGTERM saves, then must go
  local rc=$?
  echo "== $name: exit $rc after $(( SECONDS - t0 )) s (limit $limit s)"
  tar czf "$OUT/logs.tgz" -C "$LOGS" .
  return $rc
}

show() {  # show NAME [LINES]: the end of a part's log, progress bars left out
  [ -f "$LOGS/$1.log" ] && tr '\r' '\n' < "$LOGS/$1.log" | grep -v -E '[0-9]+%\|' | tail -n "${2:-25}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
$PY -c "import torch, av, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'av', av.__version__,
'opencv', cv2.__version__)"
echo "cores $CORES; $DEVICE; ViT-$PRESET ${FRAMES}x${IMG}², batch $BATCH; $WORKERS loader workers"

bench="$MME bench train --preset $PRESET --img-size $IMG --frames $FRAMES --batch $BATCH"
bench="$bench --device $DEVICE --steps $STEPS --warmup 3 --rounds 2 $BENCH_FLAGS"
part train_mme 120 $bench --recipe mme_k400_paper --json "$OUT/train_mme.json"
part train_pixel 120 $bench --recipe videomae_k400_pixel --json "$OUT/train_pixel.json"
for recipe in train_mme train_pixel; do  # each part's lines under its name
  [ -f "$LOGS/$recipe.log" ] && echo "-- $recipe" && grep -E "train step|clips/s|peak|MFU|check" "$LOGS/$recipe.log"
done

part tests_cuda 90 $PY -m pytest -q -n "$TEST_WORKERS" -p no:cacheprovider -k "cuda or gpu"
show tests_cuda 5

# the fastest MME step measured above (1,000 clips/s, issue #20's estimate for an H100, if train_mme gave none)
RATE=$($PY -c "import json, sys; print(round(max(r['clips_per_s'] for r in json.load(open(sys.argv[1]))['rows'])))" \
  "$OUT/train_mme.json" 2>/dev/null || echo 1000)
part pipeline 90 $MME bench pipeline --clips-per-s "$RATE" --workers "$WORKERS" --size "$IMG" --frames "$FRAMES" \
  --json "$OUT/pipeline.json"
show pipeline

part flow 45 $PY benchmarks/torch_flow_speed.py --device "$DEVICE" $FLOW_FLAGS
show flow

part decode 40 $PY benchmarks/gpu_decode.py --repeat "$DECODE_REPEAT" --json "$OUT/decode.json"
show decode

summary() {  # summary DIR RUN: clips/s and data wait of a finished run, steps after the first 5 (the loader's start)
  $PY -c "import sys; from mme.train.metrics import read_records, waiting_fraction
rows = read_records(sys.argv[1])[5:]
assert rows, 'too few steps'
rate = len(rows) / sum(1 / r['clips_per_s'] for r in rows)  # clips over the steps' seconds
print(f'{sys.argv[2]}: {rate:.1f} clips/s, waiting for data {100 * waiting_fraction(rows):.0f} % of the time, '
      f'over {len(rows)} steps')" "$1/$2/metrics.jsonl" "$2" || echo "$2: failed (above)"
}

runs() {  # pixel, MME online (flow in the workers), from a track cache, torch-lk in the step; RUN_STEPS steps each
  local D=$1
  $MME synth "$D" --classes 4 --videos-per-class 16 --size "$VIDEO_SIZE" --frames 80 --workers "$CORES" || return 1
  local t0=$SECONDS
  $MME extract "$D/train.txt" --root "$D" --out "$D/cache" --workers "$CORES"
  local dis_s=$((SECONDS - t0))
  local common=(data.list_file="$D/train.txt" data.root="$D" data.num_workers="$WORKERS" train.steps="$RUN_STEPS"
    train.batch_size="$BATCH" train.device="$DEVICE" train.ckpt_every=100000 model.img_size="$IMG"
    model.num_frames="$FRAMES" data.img_size="$IMG" data.num_frames="$FRAMES")
  [ "$SMOKE" = 1 ] && common+=(model.embed_dim=64 model.depth=2 model.num_heads=2 model.decoder_dim=64
    model.decoder_depth=1 model.decoder_heads=2)
  $MME pretrain --config videomae_k400_pixel --overwrite "${common[@]}" train.out_dir="$D/pixel"
  summary "$D" pixel
  if [ "$DEVICE" = cuda ]; then  # the pixel run again with the frames decoded on the GPU
    $MME pretrain --config videomae_k400_pixel --overwrite "${common[@]}" data.backend=pyav-cuda \
      train.out_dir="$D/pixel_gpu_decode"
    summary "$D" pixel_gpu_decode
  fi
  $MME pretrain --config mme_k400_paper --overwrite "${common[@]}" train.out_dir="$D/mme_online"
  summary "$D" mme_online
  $MME pretrain --config mme_k400_paper --overwrite "${common[@]}" target.cache_dir="$D/cache" \
    train.out_dir="$D/mme_cached"
  summary "$D" mme_cached
  $MME pretrain --config mme_k400_paper --overwrite "${common[@]}" target.flow=torch-lk \
    train.out_dir="$D/mme_torch_lk"
  summary "$D" mme_torch_lk
  t0=$SECONDS  # last, so that a slow one cannot cost the lines above: the cache with torch-lk on the GPU, 2 workers
  local lk_list="$D/train.txt"  # (each its own CUDA context); on the CPU (SMOKE) a quarter of the videos
  [ "$SMOKE" = 1 ] && head -n "$(( $(wc -l < "$D/train.txt") / 4 ))" "$D/train.txt" > "$D/lk.txt" && lk_list="$D/lk.txt"
  $MME extract "$lk_list" --root "$D" --out "$D/cache_lk" --workers 2 --flow torch-lk --device "$DEVICE" \
    && echo "extract with torch-lk on $DEVICE, 2 workers: $((SECONDS - t0)) s for $(wc -l < "$lk_list") videos;" \
      "with DIS on $CORES CPU workers: $dis_s s for $(wc -l < "$D/train.txt")"
}
export -f runs summary
export PY MME SMOKE DEVICE IMG FRAMES BATCH WORKERS VIDEO_SIZE RUN_STEPS CORES
part runs 180 bash -c 'runs "$0"' "$(mktemp -d)"
grep -h -E "clips/s, waiting|: failed|extract with|Error|error:" "$LOGS/runs.log" 2>/dev/null

part train_compile 150 $bench --recipe mme_k400_paper --compile --no-peer --json "$OUT/train_compile.json"
grep -h -E "compiled|peak" "$LOGS/train_compile.log" 2>/dev/null

part tests 600 $PY -m pytest -q -n "$TEST_WORKERS" -p no:cacheprovider
show tests 5
echo "total $(( SECONDS - START )) s"
