#!/usr/bin/env bash
# Regenerates the figures of docs/results.md: for each workload a Markdown
# table (table.md), results.csv, results.json and the Pareto plot
# (pareto.svg, pareto.png). Needs the ONNX Runtime library (`make up`
# installs it; or set ONNXRUNTIME_LIB). About 3-4 minutes per workload on
# 2 cores, most of it training the demand model.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/starter"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./starter

mkdir -p docs/results/azure2019 docs/results/synth
"$bin" eval --format azure2019 \
	--file testdata/azure2019-sample/1350_inv.csv --memory testdata/azure2019-sample/1350_mem.csv \
	--title "Azure Functions 2019 sample (1,350 functions): last 8 h of the day" \
	--out docs/results/azure2019 --markdown >docs/results/azure2019/table.md
"$bin" eval --format synth --apps 200 --days 2 --seed 1 \
	--title "Synthetic workload (200 apps, 2 days, seed 1): last 16 h" \
	--out docs/results/synth --markdown >docs/results/synth/table.md
cat docs/results/azure2019/table.md docs/results/synth/table.md
