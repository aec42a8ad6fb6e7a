# Source on the lent GPU machine (after install.sh), from the repository root: assembles the package as
# /tmp/py/mlip (mlip/ with kernels/, datasets/, md/ inside, as the wheel installs them) from the working
# tree of this call, and puts it first on the path, the carried wheels after it.
rm -rf /tmp/py && mkdir -p /tmp/py && cp -r mlip /tmp/py/mlip
for sub in kernels datasets md; do cp -r "$sub" "/tmp/py/mlip/$sub"; done
export PYTHONPATH=/tmp/py:/tmp/site:/tmp/site2:/tmp/site3 PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1
