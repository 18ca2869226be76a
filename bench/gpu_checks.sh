#!/usr/bin/env bash
# Every GPU check of issues 3 and 4 in one run, sized for a 15-minute device lease:
#   1. training throughput against the GPT2-Chinese way (bench/train.py, small config);
#   2. decoding speed against generate() (bench/generate.py, small config);
#   3. the quality run: small config on the three novels for MINUTES, evaluated, plus a chapter;
#   4. training recipes on the small config (bench/recipes.py part 1: fixed-rate AdamW, + cool-down,
#      Muon + cool-down, Muon fixed; RECIPE_STEPS steps each, 0 to skip).
# Results go to $OUT (the device tool's output folder when there is one).
#
# The device machine has torch, transformers, accelerate and tokenizers but no network:
# carry wheels for livelossplot, prefetch_generator (and what they need that is missing), and the
# novels, in folders ignored by git, e.g.
#   mkdir -p .corpora && cp ../shared/corpora/*.txt .corpora/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl livelossplot prefetch_generator ...
# then run:  pip install --no-deps --target /tmp/site .whl/*.whl; PYTHONPATH=/tmp/site:. bash bench/gpu_checks.sh
# On the CPU, tiny shapes test the script itself:
#   CONFIG=tiny STEPS=20 MINUTES=0.2 GEN_TOKENS=50 QUALITY_SETS="" RECIPE_STEPS=10 bash bench/gpu_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-checks}
CONFIG=${CONFIG:-small}
STEPS=${STEPS:-150}
MINUTES=${MINUTES:-5}
GEN_TOKENS=${GEN_TOKENS:-500}
RECIPE_STEPS=${RECIPE_STEPS:-300}
CORPORA=${GPT2ZH_CORPORA:-.corpora}
QUALITY_SETS=${QUALITY_SETS:---set eval_interval=50 --set save_steps=100000 --set log_interval=50}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
(nvidia-smi -L || echo "no nvidia-smi") | tee "$OUT/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/device.txt"

echo "== 1. training throughput" | tee "$OUT/train.txt"
python3 bench/train.py --corpora "$CORPORA" --config "$CONFIG" --steps "$STEPS" --warmup 30 2>&1 | tee -a "$OUT/train.txt"

echo "== 2. decoding speed" | tee "$OUT/generate.txt"
python3 bench/generate.py --corpora "$CORPORA" --config "$CONFIG" --tokens "$GEN_TOKENS" 2>&1 | tee -a "$OUT/generate.txt"

echo "== 3. quality in $MINUTES minutes" | tee "$OUT/quality.txt"
WORK=$(mktemp -d)
python3 -m gpt2zh prepare --quiet "$CORPORA/xiyouji.gbk.txt" "$CORPORA/sanguoyanyi.gbk.txt" "$CORPORA/shuihuzhuan.txt" \
  --out "$WORK/data" 2>&1 | tail -3 | tee -a "$OUT/quality.txt"
# shellcheck disable=SC2086
python3 -m gpt2zh train --data "$WORK/data" --out "$WORK/run" --config "$CONFIG" --epochs 1000 \
  --max-minutes "$MINUTES" --quiet $QUALITY_SETS 2>&1 | tail -40 | tee -a "$OUT/quality.txt"
cp "$WORK/run/log.jsonl" "$WORK/run/loss.png" "$OUT/" 2>/dev/null || true
python3 -m gpt2zh eval --model "$WORK/run" --data "$WORK/data" 2>&1 | tee -a "$OUT/quality.txt"
python3 -m gpt2zh generate --model "$WORK/run" --prompt "第一回 宴桃园豪杰三结义" --length 5000 --seed 1 \
  --out-dir "$OUT/chapter" 2>&1 >/dev/null | tee -a "$OUT/quality.txt"

if [ "$RECIPE_STEPS" -gt 0 ]; then
  echo "== 4. training recipes, $CONFIG config, $RECIPE_STEPS steps each" | tee "$OUT/recipes.txt"
  python3 bench/recipes.py --corpora "$CORPORA" --parts 1 --config "$([ "$CONFIG" = tiny ] && echo tiny || echo small)" \
    --steps "$RECIPE_STEPS" --eval-every "$(( RECIPE_STEPS / 6 > 0 ? RECIPE_STEPS / 6 : 1 ))" \
    --json "$OUT/recipes.json" 2>&1 | tee -a "$OUT/recipes.txt"
fi
