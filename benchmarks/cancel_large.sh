#!/bin/bash
# usage: measure.sh LABEL — a 50,000-point detached local sweep of a slow exp.py, then `mrunner cancel`
# needs $BENCH_DIR/p/exp.py: "import time; time.sleep(600)"; run from the repository with PYTHON=.venv/bin/python
cd ${BENCH_DIR:-/tmp/mrunner-cancel-bench}/p && export XDG_DATA_HOME=${BENCH_DIR:-/tmp/mrunner-cancel-bench}/data XDG_CONFIG_HOME=${BENCH_DIR:-/tmp/mrunner-cancel-bench}/config
PY=${PYTHON:-python}
$PY -m mrunner exp.py -m 'a=range(50000)' --detach --yes >/dev/null 2>&1
SW=$($PY -m mrunner status --json --limit 1 | $PY -c "import json,sys; print(json.load(sys.stdin)[0]['sweep']['id'])")
sleep 3
SUP=$($PY -c "from mrunner.store import Store; print(Store().sweep('$SW').detail['supervisor'].split('@')[0])")
/usr/bin/time -f "$1 cancel: %e s wall, %U s user, %S s sys" $PY -m mrunner cancel $SW 2>&1 | tail -1
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ U0 S0 _ < <(sed 's/.*) //' /proc/$SUP/stat | awk '{print "x x " $0}')
S=$(date +%s.%N)
last=""
while [ -e /proc/$SUP ]; do last=$(cut -d')' -f2 /proc/$SUP/stat 2>/dev/null | awk '{print $12+$13}') ; sleep 0.1; done
echo "$1 supervisor: exits $(echo "$(date +%s.%N) - $S" | bc | cut -c1-5) s after cancel returns; its CPU after the cancel ~ $(( (${last:-0}) ))/100 s (last sample, user+sys of the whole process life)"
