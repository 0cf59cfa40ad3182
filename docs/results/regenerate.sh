#!/usr/bin/env bash
# Regenerates the figures of docs/results.md: for each workload a Markdown
# table (table.md), results.csv, results.json and the Pareto plot
# (pareto.svg, pareto.png). Needs the ONNX Runtime library (`make up`
# installs it; or set ONNXRUNTIME_LIB). About 2-4 minutes per run on 2
# cores, most of it training the demand model; four runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/starter"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./starter

azure=(--format azure2019
	--file testdata/azure2019-sample/1350_inv.csv --memory testdata/azure2019-sample/1350_mem.csv)
synth=(--format synth --apps 200 --days 2 --seed 1)
azure_title="Azure Functions 2019 sample (1,350 functions): last 8 h of the day"
synth_title="Synthetic workload (200 apps, 2 days, seed 1): last 16 h"

# name, title, eval arguments...
run() {
	local name=$1 title=$2
	shift 2
	mkdir -p "docs/results/$name"
	"$bin" eval "$@" --title "$title" --out "docs/results/$name" --markdown >"docs/results/$name/table.md"
	cat "docs/results/$name/table.md"
}
# The models package's default horizon (5 bins = the lease TTL)...
run azure2019 "$azure_title" "${azure[@]}"
run synth "$synth_title" "${synth[@]}"
# ...and a 2-bin horizon, for ours only (the other policies do not change).
run azure2019-h2 "$azure_title, ours with a 2-bin horizon" "${azure[@]}" --horizon 2
run synth-h2 "$synth_title, ours with a 2-bin horizon" "${synth[@]}" --horizon 2
