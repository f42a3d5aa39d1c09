#!/usr/bin/env bash
# Run an experiment grid without W&B's sweep agent: every experiment file of videonorm/configs/<GRID>/ (the same
# cells as videonorm/configs/sweeps/<GRID>.yaml), one after another on this machine: fit, then the video-level
# test of the final checkpoint (last.ckpt, as the paper reports); then `videonorm compare` on the runs.
#
#   DATA_ROOT=/data/kinetics400 scripts/grid.sh                 # the paper's grid: videonorm/configs/kinetics400/*.yaml
#   EXTRA=1 DATA_ROOT=/data/kinetics400 scripts/grid.sh         # + the cells beyond the paper (kinetics400/extra/)
#   GRID=demo NORMS="bn gn" DATA_ROOT=demo_out/data scripts/grid.sh   # the CPU demo grid: each batch config x norm
#   SEEDS="0 1 2" DATA_ROOT=... scripts/grid.sh                  # repeats; compare shows mean +- std and n
#   DRY_RUN=1 scripts/grid.sh                                    # print the commands, run nothing
#   DATA_ROOT=... scripts/grid.sh --trainer.devices 4 --model.lr 0.005   # extra args go to every fit and test
#
# Environment: GRID (kinetics400), CONFIG_DIR (videonorm/configs/$GRID beside this script), DATA_ROOT (data/$GRID),
# SEEDS (0), NORMS (empty: each config's own norm; else every config once per norm, --model.net.norm), EXTRA=1 (also
# $CONFIG_DIR/extra/*.yaml), RUNS (runs: trainer.default_root_dir of the configs; compare reads $RUNS/$GRID),
# OUT (compare_out/$GRID), SKIP_TEST=1 (fit only), DRY_RUN=1. A grid folder with an lr.yaml (the demo's: each norm's
# calibrated learning rate per 16 clips) gives each norm of NORMS its own rate, scaled with the config's clips per
# device, as `videonorm demo` does.
# Safe to rerun: fits use --ckpt_path last, so an interrupted run resumes (same directory, same W&B run id) and a
# finished one ends at once; W&B logs offline unless credentials exist (see `wandb sync` in the fit's output).
# A failed cell is reported and the grid goes on; the exit status is 1 if any cell failed.
set -uo pipefail

GRID=${GRID:-kinetics400}
DATA_ROOT=${DATA_ROOT:-data/$GRID}
SEEDS=${SEEDS:-0}
RUNS=${RUNS:-runs}
OUT=${OUT:-compare_out/$GRID}
VIDEONORM=${VIDEONORM:-videonorm}
CONFIG_DIR=${CONFIG_DIR:-$(dirname "$0")/../videonorm/configs/$GRID}  # relative paths (DATA_ROOT, RUNS) stay the caller's
NORMS=${NORMS:-}

configs=()
for f in "$CONFIG_DIR"/*.yaml ${EXTRA:+"$CONFIG_DIR"/extra/*.yaml}; do
    [[ -e $f && $(basename "$f") != base.yaml && $(basename "$f") != lr.yaml ]] && configs+=("$f")
done
if [[ ${#configs[@]} -eq 0 ]]; then
    echo "error: no experiment configs in $CONFIG_DIR/" >&2
    exit 2
fi

run() {
    echo "+ $*"
    [[ -n ${DRY_RUN:-} ]] || "$@"
}

# the calibrated rate of norm $2 for config $1, scaled linearly from 16 clips to its data.batch_size (lr.yaml grids)
norm_lr() {
    python3 -c 'import sys, yaml; from pathlib import Path
config, norm, table = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
batch = (yaml.safe_load(config.read_text()).get("data") or {}).get("batch_size")
print(f"{yaml.safe_load(table.read_text())[norm] * batch / 16:.8g}")' "$1" "$2" "$CONFIG_DIR/lr.yaml"
}

failed=()
for seed in $SEEDS; do
    for config in "${configs[@]}"; do
        for norm in ${NORMS:-"-"}; do
            args=(--config "$config" --data.root "$DATA_ROOT" --seed_everything "$seed" --trainer.default_root_dir "$RUNS")
            [[ $norm == "-" ]] || args+=(--model.net.norm "$norm")
            if [[ $norm != "-" && -e $CONFIG_DIR/lr.yaml ]]; then
                args+=(--model.lr "$(norm_lr "$config" "$norm")")
            fi
            if ! run "$VIDEONORM" fit "${args[@]}" --ckpt_path last "$@"; then
                failed+=("fit $config $norm seed $seed")
                continue
            fi
            if [[ -z ${SKIP_TEST:-} ]] && ! run "$VIDEONORM" test "${args[@]}" --ckpt_path last "$@"; then
                failed+=("test $config $norm seed $seed")
            fi
        done
    done
done

run "$VIDEONORM" compare "$RUNS/$GRID" --group "$GRID" --out "$OUT" || failed+=("compare")
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "grid.sh: ${#failed[@]} failed: ${failed[*]}" >&2
    exit 1
fi
