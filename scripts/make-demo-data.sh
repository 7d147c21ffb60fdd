#!/bin/sh
# Rebuild demo/data/ and demo/model/DATA-LICENSE from the Python documentation text in
# ../shared/data/pydocs (PSF licence). The demo model (scripts/train-demo-cpu.py) trained on the
# first 98% of train.txt and never saw dev.txt, so:
#   calibration.txt: the first ~150 KB of train.txt (inside the trained part);
#   heldout.txt:     the first ~40 KB of dev.txt (held-out text for the perplexity).
# Each slice is cut at a byte count and ends at the last whole line before it (no split UTF-8).
# usage: sh scripts/make-demo-data.sh [PYDOCS_DIR]   (run from the repository root)
set -eu
SRC=${1:-../shared/data/pydocs}
mkdir -p demo/data demo/model
head -c 153600 "$SRC/train.txt" | sed '$d' > demo/data/calibration.txt
head -c 40960 "$SRC/dev.txt" | sed '$d' > demo/data/heldout.txt
{
  echo "The demo model (demo/model/model.onnx) was trained on text of the Python documentation,"
  echo "and demo/data/ holds slices of that text. Its licence follows (Debian's copyright file of"
  echo "the Python documentation, as shipped with the text)."
  echo
  cat "$SRC/COPYRIGHT"
} > demo/model/DATA-LICENSE
