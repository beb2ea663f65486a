#!/bin/sh
# Regenerates the JSON files in results/fp8/ (about a minute on 2 cores).
# Usage: results/fp8/regenerate.sh [path/to/dslab]   (default: build/dslab of this checkout)
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
DSLAB=${1:-$HERE/../../build/dslab}
DSLAB=$(cd "$(dirname "$DSLAB")" && pwd)/$(basename "$DSLAB")
cd "$HERE"

# Accumulation error vs K: per-tensor scales, 14 kept bits, floor alignment.
for nc in 0 128; do
  "$DSLAB" sim fp8 gemm --m 128 --n 128 --k 256,512,1024,2048,4096,8192 --a-granularity tensor \
    --b-granularity tensor --accum-bits 14 --promote-every $nc --json gemm_k_sweep_nc$nc.json
done
# Kept bits at K = 4096, with and without promotion.
for bits in 12 13 14 15 16 23; do
  for nc in 0 128; do
    "$DSLAB" sim fp8 gemm --m 128 --n 128 --k 4096 --a-granularity tensor --b-granularity tensor \
      --accum-bits $bits --promote-every $nc --json gemm_bits${bits}_nc$nc.json
  done
done
# V3's recipe: 1x128 tiles for A, 128x128 blocks for B, N_C = 128.
"$DSLAB" sim fp8 gemm --m 128 --n 128 --k 4096 --json gemm_v3_recipe.json

# Quantization error per format, granularity and distribution.
for dist in normal laplace student-t outliers; do
  for format in e4m3 e5m2 e5m6; do
    for g in tensor row tile block mx; do
      "$DSLAB" sim fp8 quantize --format $format --granularity $g --dist $dist --rows 512 --cols 1024 \
        --json quantize_${dist}_${format}_$g.json > /dev/null
    done
  done
done
