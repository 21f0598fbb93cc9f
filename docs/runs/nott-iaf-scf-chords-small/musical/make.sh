#!/usr/bin/env bash
# The musical measures of docs/results.md's Nottingham table: 200 pieces x 64 steps, seed 0, against the Nottingham
# test split cut into 64-step windows (python -m train.musicstats; run from the project root). The JSONs here were
# made from the run's best.lnf (float32 weights) before shipping; this script makes them from the shipped float16 file.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
PY=${PY:-.venv/bin/python}
OUT=docs/runs/nott-iaf-scf-chords-small/musical
CH=assets/models/nottingham-iaf-scf-chords.lnf
ms() { name=$1; shift; $PY -m train.musicstats "$@" --num 200 --length 64 --seed 0 --threads 1 --json > "$OUT/$name.json"; }
ms chords-sample-T1.0 "$CH" --decode bernoulli --temperature 1.0   # with the two baselines and the data
ms voiced-T1.0 "$CH" --decode voiced --temperature 1.0 --no-baselines
ms voiced-sample-T1.0 "$CH" --decode voiced-sample --temperature 1.0 --no-baselines   # the shipped setting
ms old-shipped-bernoulli assets/models/nottingham-iaf-scf.lnf --no-baselines
