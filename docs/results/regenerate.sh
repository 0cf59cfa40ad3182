#!/usr/bin/env bash
# Regenerates the figures of docs/results.md: for each workload a Markdown
# report (table.md), results.csv, results.json and the Pareto plot of the
# test range (pareto.svg, pareto.png). Needs the ONNX Runtime library
# (`make up` installs it; or set ONNXRUNTIME_LIB). About 2-3 minutes per
# workload on 2 cores, most of it training the demand model twice (before
# the select range and before the test range). The Azure sample's model is
# trained from five seeds (four more runs of ours alone, about 2 minutes
# each); this script is the only reader of its test range.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/starter"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./starter

# name, title, eval arguments...
run() {
	local name=$1 title=$2
	shift 2
	mkdir -p "docs/results/$name"
	"$bin" eval "$@" --title "$title" --out "docs/results/$name" --markdown >"docs/results/$name/table.md"
	cat "docs/results/$name/table.md"
}
run azure2019 "Azure Functions 2019 sample (1,350 functions): test range, the last 8 h" \
	--format azure2019 --file testdata/azure2019-sample/1350_inv.csv --memory testdata/azure2019-sample/1350_mem.csv \
	--more-train-seeds 2,3,4,5
# Three synthetic fleets of other shapes, three days each (train on the
# first, choose on the second, report on the third): the defaults must hold
# their ordering beyond the one real trace.
run synth-1 "Synthetic, seed 1, the default mix: test range, day 3" \
	--format synth --apps 300 --days 3 --seed 1
run synth-2 "Synthetic, seed 2, timers with jitter: test range, day 3" \
	--format synth --apps 300 --days 3 --seed 2 --mix timer=0.5,bursty=0.2,rare=0.2,diurnal=0.08,heavy=0.02 --timer-jitter 0.2
run synth-3 "Synthetic, seed 3, mostly rare and bursty: test range, day 3" \
	--format synth --apps 300 --days 3 --seed 3 --mix rare=0.4,bursty=0.35,diurnal=0.15,timer=0.08,heavy=0.02 --timer-jitter 0.1
# Two fleets of sparse session apps (a generative-AI inference service's
# shape) whose applications change during the trace, as real ones do from
# week to week.
run synth-4 "Synthetic, seed 4, sessions with drift: test range, day 3" \
	--format synth --apps 300 --days 3 --seed 4 --mix session=0.6,rare=0.15,bursty=0.1,diurnal=0.1,timer=0.03,heavy=0.02 --drift 0.3
run synth-5 "Synthetic, seed 5, sessions, timers and heavy hitters with drift: test range, day 3" \
	--format synth --apps 300 --days 3 --seed 5 --mix session=0.4,timer=0.2,diurnal=0.2,bursty=0.1,rare=0.05,heavy=0.05 --drift 0.4 --timer-jitter 0.1
