#!/usr/bin/env bash
# On the lent GPU machine, from the repository root: `bash benchmarks/device/install.sh 1`, then (within
# the machine's warm window) `bash benchmarks/device/install.sh 2` in the next call, carrying .gpu/b and
# .gpu/c. Part 1 installs .gpu/a into /tmp/site, part 2 cuEquivariance's torch ops into /tmp/site2 and
# /tmp/site3. Then `source benchmarks/device/env.sh` before running a benchmark or pytest.
set -euo pipefail
case "${1:?part 1 or 2}" in
1)
    pip install --quiet --no-deps --target /tmp/site .gpu/a/*.whl
    ;;
2)
    pip install --quiet --no-deps --target /tmp/site2 .gpu/b/*.whl
    pip install --quiet --no-deps --target /tmp/site3 .gpu/c/*.whl
    ;;
*)
    echo "part must be 1 or 2" >&2
    exit 2
    ;;
esac
