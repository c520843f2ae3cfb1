#!/usr/bin/env bash
# Issue 31 on a lent GPU: choose among a space's candidates on validation (`cxr sweep --objective val_stressed`,
# several sweep processes on one study), then train the chosen config over test seeds and read test once, clean and
# under the shift battery. Everything small that it writes is packed into $OUT/NAME.tar.gz.
#
#   benchmarks/gpu/lite.sh NAME RECIPE DATA SPACE TRIALS "SEEDS" WORKERS [SELECT_S] [DEADLINE_S]
#
# WORKERS sweep processes (and test runs) share the GPU, each with its own loader workers. The selection stops after
# SELECT_S seconds (default 300) and the rule chooses among the trials finished by then; DEADLINE_S (default 480)
# stops whatever still runs, so that the figures written so far come back.
set -uo pipefail
NAME=$1 RECIPE=$2 DATA=$3 SPACE=$4 TRIALS=$5 SEEDS=$6 WORKERS=$7 SELECT=${8:-300} DEADLINE=${9:-480}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # several training processes share the cores
CXR="python3 -m cxr.cli"
RUNS=${RUNS:-runs/gpu}
OUT=${OUT:-$RUNS/out}
SEL=$RUNS/select-$NAME
mkdir -p "$SEL" "$OUT"
T0=$(date +%s)
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
log() { echo "[$NAME $(($(date +%s) - T0))s] $*"; }

log "selection: $TRIALS trials of $SPACE on $WORKERS processes"
for w in $(seq "$WORKERS"); do
    timeout "$((SELECT - ($(date +%s) - T0)))" $CXR sweep --config "$RECIPE" --data "$DATA" --space "$SPACE" --objective val_stressed \
        --trials "$TRIALS" --out "$SEL" > "$SEL/worker$w.log" 2>&1 &
    sleep 5  # the first process creates the study
done
wait
# --trials 1: runs nothing more, writes best.yaml and trials.csv from every trial finished by now
$CXR sweep --config "$RECIPE" --data "$DATA" --space "$SPACE" --objective val_stressed --trials 1 \
    --out "$SEL" > "$SEL/results.log" 2>&1
tail -3 "$SEL/results.log"
log "chosen: $(head -1 "$SEL/best.yaml" 2>/dev/null)"

if [ -f "$SEL/best.yaml" ]; then
    for s in $SEEDS; do
        run=$RUNS/test-$NAME-seed$s
        ( timeout "$(left)" $CXR train --config "$SEL/best.yaml" --set seed="$s" --out "$run" --overwrite \
              > "$run.log" 2>&1 \
          && $CXR evaluate "$run" --split test > "$run.eval.log" 2>&1 \
          && timeout "$(left)" $CXR stress "$run" --split test --device "${DEVICE:-cuda}" > "$run.stress.log" 2>&1 \
          && sha256sum "$run/model.pt" > "$run/model.sha256" ) &
        while [ "$(jobs -rp | wc -l)" -ge "$WORKERS" ]; do sleep 2; done
    done
    wait
fi
log "done"
nvidia-smi --query-gpu=name,memory.used --format=csv > "$RUNS/gpu-$NAME.txt" 2>&1
tar czf "$OUT/$NAME.tar.gz" --exclude='*.pt' --exclude='*.ckpt' --exclude='*.onnx' --exclude='events.out*' \
    --exclude='*.db' --exclude='predictions_train.csv' "$RUNS"/select-$NAME "$RUNS"/test-$NAME-* "$RUNS"/gpu-$NAME.txt 2>/dev/null
ls -la "$OUT"
