#!/usr/bin/env bash
# Download (on a machine with registry access) the wheels the lent GPU machine lacks, for its Python 3.12,
# into .gpu/a (part 1: < 64 MiB with cuEquivariance's ops), .gpu/b (part 2) and .gpu/c. Run from the
# repository root; .gpu/ must be ignored by git (add "/.gpu/" to .git/info/exclude). See README.md here.
set -euo pipefail
platforms=()
for tag in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35; do
    platforms+=(--platform "${tag}_x86_64")
done
get() {  # folder, requirements...
    local folder=$1
    shift
    mkdir -p "$folder"
    pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" --dest "$folder" "$@"
}
get .gpu/a cuequivariance-ops-cu13==0.13.0 mace-torch==0.3.16 e3nn==0.6.0 ase==3.29.0 configargparse \
    gitpython gitdb smmap matscipy==1.3.1 orjson prettytable wcwidth torch-ema lmdb
get .gpu/b cuequivariance-ops-torch-cu13==0.13.0 cuequivariance==0.13.0 cuequivariance-torch==0.13.0
get .gpu/c platformdirs
du -sh .gpu/a .gpu/b .gpu/c
