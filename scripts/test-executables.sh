#!/usr/bin/env bash
# Builds the test executables (cargo test --no-run, with any extra cargo
# arguments given) and prints one line per executable: "<kind>-<name> <path>".
# Shared by gpu-check.sh (which bundles them) and emu-test.sh (which runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
json="$(mktemp)"
trap 'rm -f "$json"' EXIT
cargo test --no-run --message-format=json "$@" >"$json"
python3 - "$json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        t = m["target"]
        print(f'{t["kind"][0]}-{t["name"]} {m["executable"]}')
PY
