#!/usr/bin/env bash
# Builds the sample applications for their specs (samples/specs): the Go
# programs into samples/bin/ (or the folder given as $1) and, when it is
# missing or of another shape, the go-model's weights file there too.
# Idempotent and quick when everything is up to date. Leaves every file
# the specs name readable (and the programs executable) by everyone: a host
# agent that runs as root starts instances as the user nobody.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/bin}
# The model go-model loads: 6144 x 2048 float32 weights (48 MiB).
rows=6144
cols=2048
seed=1

export GOFLAGS=${GOFLAGS:--buildvcs=false}
mkdir -p "$out"
out=$(cd "$out" && pwd)
(cd "$here/.." && go build -o "$out/" ./samples/go-model ./samples/trivial)

model=$out/model.bin
want=$((24 + 4 * rows * cols + 4))
have=$(stat -c %s "$model" 2>/dev/null || echo 0)
if [ "$have" != "$want" ]; then
  "$out/go-model" --write-model "$model" --rows "$rows" --cols "$cols" --seed "$seed"
  echo "samples: wrote $model (${rows}x${cols} float32 weights)" >&2
fi

chmod a+rx "$here" "$here/specs" "$here/py-heavy" "$out" "$out/go-model" "$out/trivial"
chmod a+r "$here"/specs/*.json "$here/py-heavy/app.py" "$model"
command -v python3 >/dev/null || echo "samples: python3 is not on PATH: sample-py cannot start" >&2
