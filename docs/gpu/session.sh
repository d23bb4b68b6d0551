#!/usr/bin/env bash
# One device session (one call of at most ~9 minutes on one GPU): the GPU check, then SimCLR, EquiMod and E-SSL
# pretrained concurrently at the papers' CIFAR-10 settings (ResNet-18 width 1, batch 512, SGD, cosine; the dataset's
# defaults) for as many epochs as the measured step times allow, each scored by the E-SSL kNN monitor (k=200, t=0.1,
# the 50,000 train images as bank, the 10,000 test images as queries) and the online linear probe. The short
# schedule's deviations: epochs (not 800), warm-up 10% of them (not 10 epochs), the kNN monitor at quarters.
#
# The device machine runs its own python3/torch and cannot see ../shared, so the data travel packed (18 MB):
#   echo /.device/ >> .git/info/exclude; mkdir -p .device
#   tar cf - -C ../shared/data/cifar10-jpeg README.md train test | xz -9 -T2 > .device/cifar.tar.xz
#   device run, carry [".device"], timeout_s 560:  OUT=$OUT DATA=.device/cifar.tar.xz DEADLINE_S=500 bash docs/gpu/session.sh
# It writes log.txt, gpu.json (the GPU check, eager), runs.tar.gz (each run's config.yaml, metrics.jsonl, log; no
# weights) and, if time is left, gpu_compile.json (the torch.compile rows) into OUT.
# DEADLINE_S bounds the whole script; EXTRA adds overrides to every train command. A second call on the still-warm
# machine can add a seed at the same schedule, skipping the check (EPOCHS fixes the epochs, NO_COMPILE skips the
# compile rows, RUNS must be a new directory):
#   OUT=$OUT DATA=.device/cifar.tar.xz DEADLINE_S=370 EPOCHS=14 NO_COMPILE=1 EXTRA="seed=1" RUNS=/tmp/gpu-runs-seed1 \
#   bash docs/gpu/session.sh
# Back here, the runs become the study paper_cifar10 (docs/results.md §7; docs/gpu/2026-12-04 holds that session's):
#   for s in 0 1; do mkdir -p runs/gpu/seed$s && tar xzf docs/gpu/2026-12-04/seed$s/runs.tar.gz -C runs/gpu/seed$s; done
#   python -m engine study collect paper_cifar10 runs/gpu/seed*/paper-* --out docs/gpu/study-paper_cifar10
#   python -m engine study report docs/gpu/study-paper_cifar10 --out docs/study-paper_cifar10
# A CPU dry run of the whole flow (about 2 minutes here):
#   OUT=/tmp/dry DATA=.device/cifar.tar.xz PY=.venv/bin/python DEADLINE_S=300 METHODS="simclr equimod" \
#   EXTRA="model.width=0.0625 data.train_subset=512 optim.batch_size=128 knn_bank=1000 knn_queries=200 epochs=1" \
#   bash docs/gpu/session.sh
set -u
export PYTHONUNBUFFERED=1 EQUILAB_CACHE=${EQUILAB_CACHE:-/tmp/equilab-cache}
PY=${PY:-python3}
DEADLINE_S=${DEADLINE_S:-530}
METHODS=${METHODS:-simclr equimod essl}
RUNS=${RUNS:-/tmp/gpu-runs}
ROOT=${ROOT:-/tmp/cifar10-jpeg}
exec > >(tee "$OUT/log.txt") 2>&1
left() { echo $((DEADLINE_S - SECONDS)); }

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
$PY -c "import sys, torch, torchvision, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__,
'torchvision', torchvision.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"

echo "== data ($SECONDS s)"
mkdir -p "$ROOT" && $PY -c "import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
  "$DATA" "$ROOT" || exit 1
$PY -c "
from engine.data import DataSpec
for split in ('train', 'test'):
    d = DataSpec('cifar10', split, '$ROOT', {}).load(); print(split, d.images.shape)" || exit 1

if [ -z "${EPOCHS:-}" ]; then
echo "== bench gpu ($SECONDS s)"
timeout 150 $PY -m engine bench gpu --out "$OUT/gpu.json" --methods "${METHODS// /,}" --no-compile --rounds 3 \
  --budget-s 60 || echo "bench gpu failed or timed out"

echo "== plan ($SECONDS s)"
EPOCHS=$($PY - "$OUT/gpu.json" "$(left)" $METHODS <<'PY'
import json, math, sys
# epochs that fit: the methods share the GPU, so count their epochs as if run one after the other (x1.4 for the
# online probe's extra forward, the host loop and the end-of-epoch probe), after 60 s for start-up and the last kNN
path, left, methods = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
try:
    rows = {r["item"]: r for r in json.load(open(path))["rows"]}
    per_epoch = sum(97 * rows[f"train step {m}"]["median"] / 1000 for m in methods) * 1.4
except (OSError, KeyError, ValueError):
    per_epoch = 60.0
print(max(1, min(200, math.floor((left - 60) / per_epoch))), file=sys.stdout)
print(f"{per_epoch:.1f} s per epoch of all methods together, {left:.0f} s left", file=sys.stderr)
PY
)
fi
WARM=$(( EPOCHS / 10 > 1 ? EPOCHS / 10 : 1 ))
KNN=$(( EPOCHS / 4 > 1 ? EPOCHS / 4 : 1 ))
echo "epochs=$EPOCHS warmup_epochs=$WARM knn_every=$KNN"

echo "== train ($SECONDS s)"
mkdir -p "$RUNS"
pids=()
for m in $METHODS; do
  timeout $(( $(left) - 15 )) $PY -m engine train --method "$m" --dataset cifar10 --data-root "$ROOT" \
    --out "$RUNS/paper-$m" --no-progress epochs=$EPOCHS warmup_epochs=$WARM knn_every=$KNN knn_bank=50000 \
    knn_queries=10000 online_linear=true checkpoint_every=0 ${EXTRA:-} > "$RUNS/train-$m.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"   # (a bare wait would also wait for the tee above)
for m in $METHODS; do echo "-- $m"; tail -n 3 "$RUNS/train-$m.log"; tail -n 1 "$RUNS/paper-$m/metrics.jsonl"; done

echo "== pack ($SECONDS s)"
(cd "$RUNS" && tar czf "$OUT/runs.tar.gz" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.state' .)

if [ "$(left)" -gt 90 ] && [ -z "${NO_COMPILE:-}" ]; then
  echo "== compile check ($SECONDS s)"
  timeout "$(left)" $PY -m engine bench gpu --out "$OUT/gpu_compile.json" --methods simclr --rounds 2 --budget-s 20 \
    || echo "compile check failed or timed out"
fi
echo "done in $SECONDS s"
