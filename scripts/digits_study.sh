#!/usr/bin/env bash
# The second data set of the fine-tuning study (issue #15, docs/study.md): scikit-learn's 8x8
# digits (1 438 train / 359 val images, enlarged to 32 px), pre-trained with the default HPM
# (efficient mode) at the reference architecture, then k-NN, linear probe and the `reference`
# fine-tune recipe on the pre-trained encoder and on random-init encoders of the same
# architecture (seeds 0-2). Everything resumes: re-run the script to continue.
#   bash scripts/digits_study.sh [OUT_DIR]   (default runs/digits; about 25 min at one thread)
# EPOCHS / FT_EPOCHS change the pre-training / fine-tuning epochs (e.g. 1 and 1 for a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/digits}
EPOCHS=${EPOCHS:-100}
FT=()
if [ -n "${FT_EPOCHS:-}" ]; then FT=(epochs="$FT_EPOCHS"); fi
DATA=$OUT/data
[ -d "$DATA/train" ] || python scripts/digits_to_folder.py "$DATA"
# no horizontal flips: a mirrored digit is another shape
hpm pretrain --data-dir "$DATA" --output-dir "$OUT/hpm" data.channels=1 data.hflip=0 \
  train.epochs="$EPOCHS" train.warmup_epochs=$(( EPOCHS / 10 )) train.batch_size=128 train.precision=bf16 eval.knn_at_end=false
hpm eval knn "$OUT/hpm" --data-dir "$DATA"
hpm eval linear "$OUT/hpm" --data-dir "$DATA"
hpm eval finetune "$OUT/hpm" --data-dir "$DATA" hflip=0 "${FT[@]}"
for seed in 0 1 2; do
  hpm eval finetune "$OUT/hpm" --random-init --seed "$seed" --data-dir "$DATA" hflip=0 seed="$seed" "${FT[@]}" \
    --out "$OUT/random_init/finetune_seed_$seed.json"
done
hpm eval knn "$OUT/hpm" --random-init --data-dir "$DATA" --out "$OUT/random_init/knn.json"
hpm eval linear "$OUT/hpm" --random-init --data-dir "$DATA" --out "$OUT/random_init/linear.json"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
top1 = lambda p: json.loads(Path(p).read_text())["result"]["top1"]
knn = lambda p: json.loads(Path(p).read_text())["result"]["top1"]["20"]  # k = 20
rand = [top1(out / "random_init" / f"finetune_seed_{s}.json") for s in range(3)]
print(f"digits | pre-trained HPM: k-NN {knn(out / 'hpm/eval/knn.json'):.2f} linear {top1(out / 'hpm/eval/linear.json'):.2f} "
      f"fine-tune {top1(out / 'hpm/eval/finetune.json')}")
print(f"digits | random init: k-NN {knn(out / 'random_init/knn.json'):.2f} linear {top1(out / 'random_init/linear.json'):.2f} "
      f"fine-tune {rand} (mean {sum(rand) / 3:.2f})")
PY
