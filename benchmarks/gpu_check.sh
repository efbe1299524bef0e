#!/usr/bin/env bash
# One command that checks a CUDA machine runs hpm at full speed (issue #22), sized to finish in
# under 8 minutes on one H100/H200-class GPU (an estimate: not yet run on one), then one summary
# (also OUT/summary.json):
#   (a) bench: ViT-B/16, batch 256, bf16; mae, hpm, hpm_efficient, eager and compiled: step time,
#       images/s, MFU against the card's datasheet bf16 peak (hpm/peak_flops.py; --peak-tflops
#       overrides), peak memory, compile time;
#   (b) a 2-minute pre-training at 224 px from generated ImageNet-like shards with every core a
#       loader worker: the run's images/s against the loader's alone (loader- or model-bound);
#   (c) a 50-step pre-training under torchrun --nproc_per_node=1 stopped with SIGTERM and re-run:
#       it resumes and finishes at step 50 with no step lost or repeated;
#   (d) bench on video: VideoMAE's ViT-B (video_b16, 16 x 224 x 224 clips, 2 x 16 x 16 tubelets),
#       batch 32, bf16, mask ratio 0.9, eager: s/step of videomae (tube masks) and hpm_efficient
#       (the default video HPM: masked-view teacher, one-block loss predictor) and their ratio,
#       sized for well under a minute on one H200 (an estimate: not yet run on one).
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--peak-tflops T]   # on a CUDA machine
#   bash benchmarks/gpu_check.sh --dry-run [--out DIR]            # the same on the CPU, tiny sizes
#
# --dry-run: preset small, 32 px, few images and steps, 1-2 workers, bench without compiling
# (GPU_CHECK_COMPILE=both compiles there too, about a minute per variant on a CPU). Needs
# `hpm` installed (make install) and, for (b)/(c), scripts/make_imagenet_like.py and `hpm data pack`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
HPM=("$PYTHON" -m hpm.cli)  # the `hpm` command of this interpreter
DRY=0
OUT=""
PEAK=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT="$2"; shift ;;
        --peak-tflops) PEAK=(--peak-tflops "$2"); shift ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [[ $DRY -eq 0 ]] && ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device is visible to PyTorch (torch.cuda.is_available() is False)." >&2
    echo "gpu_check: run it on a GPU machine, or pass --dry-run for the CPU rehearsal at tiny sizes." >&2
    exit 3
fi

OUT="${OUT:-${ROOT}/runs/gpu_check$([[ $DRY -eq 1 ]] && echo _dry)}"
rm -rf "$OUT"
mkdir -p "$OUT"
NCPU="$(nproc)"
if [[ $DRY -eq 1 ]]; then
    BENCH=(--preset small --batch-size 8 --precision fp32 --steps 2 --warmup 1 --compile "${GPU_CHECK_COMPILE:-off}")
    IMAGES=(--classes 2 --images 20)          # 40 images
    TRAIN=(--preset small --batch-size 8 --epochs 2 train.log_every=1)
    TRAIN_SECONDS=120 WORKERS=2 LOADER_IMAGES=32 LOADER_BATCH=8
    RESUME=(--preset small --batch-size 8 --epochs 10 train.log_every=1)   # 5 steps x 10 epochs = 50
    STOP_AT=10
    VIDEO_BENCH=(--preset video_small --batch-size 2 --precision fp32 --steps 1 --warmup 1 --compile off)
else
    BENCH=(--preset vit_b16 --batch-size 256 --precision bf16 --steps 6 --warmup 2 --compile "${GPU_CHECK_COMPILE:-both}")
    IMAGES=(--classes 32 --images 325)        # 10 400 images: 40 steps of 256 an epoch
    # a checkpoint only at the (time-limit) stop: ViT-B's checkpoint is 1.5 GB
    TRAIN=(--preset vit_b16 --batch-size 256 --precision bf16 --epochs 1000 train.ckpt_every_epochs=1000)
    TRAIN_SECONDS=120 WORKERS="$NCPU" LOADER_IMAGES=256 LOADER_BATCH=256
    RESUME=(--preset small --batch-size 208 --epochs 1 train.log_every=1)   # 10 400 / 208 = 50 steps
    STOP_AT=20
    # eager: compiling both video variants would take longer than timing them
    VIDEO_BENCH=(--preset video_b16 --batch-size 32 --precision bf16 --steps 8 --warmup 3 --compile off)
fi
QUIET=(eval.knn_at_end=false eval.figures_at_end=false)

declare -A SECONDS_OF
part() {  # part NAME COMMAND...: run, time, stop the whole check on failure
    local name="$1"; shift
    local start=$SECONDS
    echo "== gpu_check: $name" >&2
    "$@"
    SECONDS_OF[$name]=$((SECONDS - start))
}

# (a) the step, eager and compiled
bench() {
    "${HPM[@]}" bench "${BENCH[@]}" "${PEAK[@]}" --variants mae,hpm,hpm_efficient --json > "$OUT/bench.json"
}

# (b) generated shards, a time-limited run with every core a worker, the loader alone
make_shards() {
    local parts=$(( DRY ? 1 : NCPU ))
    local per_class classes
    classes="${IMAGES[1]}"; per_class="${IMAGES[3]}"
    # one generator per core, each writing its own classes, then moved into one folder
    local pids=()
    for ((p = 0; p < parts; p++)); do
        local share=$(( classes / parts + (p < classes % parts ? 1 : 0) ))
        [[ $share -gt 0 ]] || continue
        "$PYTHON" "$ROOT/scripts/make_imagenet_like.py" "$OUT/parts/$p" --classes "$share" --images "$per_class" \
            --seed "$p" > /dev/null &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    mkdir -p "$OUT/images/train"
    for dir in "$OUT"/parts/*/train/*; do
        mv "$dir" "$OUT/images/train/p$(basename "$(dirname "$(dirname "$dir")")")_$(basename "$dir")"
    done
    rm -rf "$OUT/parts"
    "${HPM[@]}" data pack "$OUT/images" --out "$OUT/shards" --workers "$NCPU" > "$OUT/pack.out" 2>&1 \
        || { tail -20 "$OUT/pack.out" >&2; echo "gpu_check: hpm data pack failed" >&2; return 1; }
}

train_run() {
    local status=0
    timeout --preserve-status --signal=TERM --kill-after=120 "$TRAIN_SECONDS" \
        "${HPM[@]}" pretrain --data-dir "$OUT/shards" --output-dir "$OUT/train" "${TRAIN[@]}" \
        "data.num_workers=$WORKERS" "${QUIET[@]}" > "$OUT/train.out" 2>&1 || status=$?
    if [[ $status -ne 0 && $status -ne 143 ]]; then  # 143: stopped by the time limit (SIGTERM), cleanly
        tail -20 "$OUT/train.out" >&2
        echo "gpu_check: the pre-training run failed (exit $status), log in $OUT/train.out" >&2
        return 1
    fi
}

loader_alone() {
    "${HPM[@]}" bench --data "$OUT/shards" --workers "$WORKERS" --images "$LOADER_IMAGES" --batch-size "$LOADER_BATCH" \
        "${TRAIN[@]:0:2}" --json > "$OUT/loader.json"
}

# (c) torchrun, SIGTERM, resume
last_step() {
    "$PYTHON" - "$1" <<'EOF'
import json, sys
steps = [0]
for line in open(sys.argv[1]):
    try:
        record = json.loads(line)
    except ValueError:  # a line being written
        continue
    if "loss" in record:
        steps.append(int(record["step"]))
print(max(steps))
EOF
}

stop_and_resume() {
    local run="$OUT/resume" log="$OUT/resume_1.out"
    # torchrun, one process: the launch path of a cluster job
    local cmd=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 -m hpm.cli pretrain
               --data-dir "$OUT/shards" --output-dir "$run"
               "${RESUME[@]}" "data.num_workers=$(( WORKERS < 4 ? WORKERS : 4 ))" "${QUIET[@]}")
    "${cmd[@]}" > "$log" 2>&1 &
    local pid=$! waited=0
    until [[ -f "$run/metrics.jsonl" && $(last_step "$run/metrics.jsonl") -ge $STOP_AT ]]; do
        if ! kill -0 "$pid" 2> /dev/null; then
            tail -20 "$log" >&2
            echo "gpu_check: the torchrun run ended before step $STOP_AT, so it could not be stopped" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
        [[ $waited -lt 3000 ]] || { kill -KILL "$pid"; echo "gpu_check: step $STOP_AT not reached in 300 s" >&2; return 1; }
    done
    kill -TERM "$pid"
    local status=0
    wait "$pid" || status=$?
    [[ $status -ne 0 ]] || { echo "gpu_check: the stopped run exited 0: SIGTERM was not handled" >&2; return 1; }
    grep -q "Re-run the same command to resume" "$log" \
        || { tail -20 "$log" >&2; echo "gpu_check: no clean stop after SIGTERM (exit $status)" >&2; return 1; }
    "${cmd[@]}" > "$OUT/resume_2.out" 2>&1 \
        || { tail -20 "$OUT/resume_2.out" >&2; echo "gpu_check: the resumed run failed" >&2; return 1; }
}

# (d) the video step: VideoMAE against the default video HPM, at VideoMAE's mask ratio
video_bench() {
    "${HPM[@]}" bench "${VIDEO_BENCH[@]}" "${PEAK[@]}" --variants videomae,hpm_efficient mask.ratio=0.9 --json \
        > "$OUT/video_bench.json"
}

T0=$SECONDS
part bench bench
part shards make_shards
part train train_run
part loader loader_alone
part resume stop_and_resume
part video video_bench
{
    echo "{"
    for name in bench shards train loader resume video; do echo "  \"$name\": ${SECONDS_OF[$name]},"; done
    echo "  \"total\": $((SECONDS - T0))"
    echo "}"
} > "$OUT/seconds.json"
"$PYTHON" "$ROOT/benchmarks/gpu_check_summary.py" "$OUT" --dry-run "$DRY"
