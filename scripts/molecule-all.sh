#!/usr/bin/env bash
# Every molecule scenario (or those named), side by side: each has its own containers, its own
# credentials and its own log. When all have ended, prints each scenario's recap, and the
# whole log of any that failed. Exits 1 if any failed.
#   scripts/molecule-all.sh [SCENARIO...]    (make test-molecule builds the images first)
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-env.sh
. scripts/podman-env.sh
export PY_COLORS=0 ANSIBLE_NOCOLOR=1 NO_COLOR=1

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  for file in molecule/*/molecule.yml; do
    scenarios+=("$(basename "$(dirname "$file")")")
  done
fi
logs=$(mktemp -d "${TMPDIR:-/tmp}/homelab-p2p-molecule.XXXXXX")

declare -A pids
for scenario in "${scenarios[@]}"; do
  echo "molecule: $scenario started ($logs/$scenario.log)"
  molecule test --scenario-name "$scenario" >"$logs/$scenario.log" 2>&1 &
  pids[$scenario]=$!
done

failed=()
for scenario in "${scenarios[@]}"; do
  if wait "${pids[$scenario]}"; then
    echo "molecule: $scenario passed"
  else
    failed+=("$scenario")
    echo "molecule: $scenario FAILED"
  fi
done

for scenario in "${scenarios[@]}"; do
  if [[ " ${failed[*]} " == *" $scenario "* ]]; then
    echo "===== molecule $scenario: the whole log ====="
    cat "$logs/$scenario.log"
  else
    echo "===== molecule $scenario: recap ====="
    sed -n '/^DETAILS/,$p' "$logs/$scenario.log"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule: failed: ${failed[*]} (logs in $logs)"
  exit 1
fi
rm -rf "$logs"
echo "molecule: all passed: ${scenarios[*]}"
