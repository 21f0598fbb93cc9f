#!/usr/bin/env bash
# Regenerates every JSON here: the musical measures of docs/results.md's table, 200 pieces x 64 steps, seed 0,
# against the JSB test split cut into 64-step windows (python -m train.musicstats; run from the project root).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
PY=${PY:-.venv/bin/python}
OUT=docs/runs/jsb-iaf-scf-chords-small/musical
CH=assets/models/jsb-iaf-scf-chords.lnf
ms() { name=$1; shift; $PY -m train.musicstats "$@" --num 200 --length 64 --seed 0 --threads 1 --json > "$OUT/$name.json"; }
ms shipped-voiced-T1.0 "$CH"                                    # the shipped default (with the two baselines and the data)
ms bernoulli-default "assets/models/jsb-iaf-scf.lnf" --no-baselines   # the old default, Bernoulli emission
ms chords-sample-T1.0 "$CH" --decode bernoulli --temperature 1.0 --key-temperature 1.0 --no-baselines
ms chords-sample-T0.8-notes0.6-legato0.8 "$CH" --decode bernoulli --temperature 0.8 --key-temperature 0.6 --continuity 0.8 --no-baselines
ms chords-likeliest-T0.8 "$CH" --decode threshold --temperature 0.8 --no-baselines
ms chords-likeliest-T0.8-best2 "$CH" --decode threshold --temperature 0.8 --best-of 2 --no-baselines
ms voiced-T0.8 "$CH" --decode voiced --temperature 0.8 --no-baselines
ms voiced-sample-T1.0-notes1.0 "$CH" --decode voiced-sample --temperature 1.0 --key-temperature 1.0 --no-baselines
ms voiced-sample-T1.0-notes0.8 "$CH" --decode voiced-sample --temperature 1.0 --key-temperature 0.8 --no-baselines
