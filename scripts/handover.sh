#!/usr/bin/env bash
# The main job until `dspans demo` lands: one trace built by five separate
# processes that share nothing but saved span JSON files, the way CI steps
# or job runners on different hosts would.
#
#   process 1  starts the QueueItem span            (saves queueitem.json)
#   process 2  starts its BuildSet child             (saves buildset.json)
#   process 3  a "remote worker" that only gets the span context
#              (about 100 bytes) runs JobExecution as a child
#   process 4  ends the BuildSet with its result
#   process 5  ends the QueueItem
#
# Spans are written as OTLP-JSON lines to WORKDIR/traces.jsonl (pass
# --otlp-endpoint URL to send them to a collector instead).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${DSPANS_WORKDIR:-$(mktemp -d -t dspans-handover.XXXXXX)}
mkdir -p "$work"
export_args=(--output "$work/traces.jsonl")
if [ "${1:-}" = "--otlp-endpoint" ] && [ -n "${2:-}" ]; then
    export_args=(--otlp-endpoint "$2")
fi

echo "==> building dspans" >&2
cargo build --quiet --manifest-path "$root/Cargo.toml" -p dspans-cli
dspans="$root/target/debug/dspans"
cd "$work"
echo "==> working in $work" >&2

"$dspans" span start QueueItem >queueitem.json
echo "[process 1] QueueItem saved: $(cut -c1-90 queueitem.json)..."

"$dspans" span start BuildSet --parent-info queueitem.json >buildset.json
context=$("$dspans" span context buildset.json)
echo "[process 2] BuildSet saved; its span context (${#context} bytes): $context"

"$dspans" span child JobExecution --context "$context" --attr hostname="$(hostname)" "${export_args[@]}"
echo "[process 3] JobExecution ran as a child of a span this process never saw"

"$dspans" span end buildset.json --attr-json '{"result": "SUCCESS"}' "${export_args[@]}"
echo "[process 4] BuildSet restored and ended"

"$dspans" span end queueitem.json --attr-json '{"zuul_pipeline": "gate", "ref_number": ["1"]}' "${export_args[@]}"
echo "[process 5] QueueItem restored and ended"

if [ -f traces.jsonl ]; then
    echo
    echo "One trace, three spans, five processes ($work/traces.jsonl):"
    python3 - traces.jsonl <<'PY'
import json, sys
spans = []
for line in open(sys.argv[1]):
    for rs in json.loads(line)["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            spans.extend(ss["spans"])
by_id = {s["spanId"]: s for s in spans}
def depth(s):
    d = 0
    while s.get("parentSpanId") in by_id:
        s, d = by_id[s["parentSpanId"]], d + 1
    return d
for s in sorted(spans, key=lambda s: (depth(s), int(s["startTimeUnixNano"]))):
    ms = (int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])) / 1e6
    print(f"  {'  ' * depth(s)}{s['name']:<14} trace {s['traceId']}  span {s['spanId']}  "
          f"parent {s.get('parentSpanId') or '-':<16}  {ms:8.1f} ms")
traces = {s["traceId"] for s in spans}
assert len(traces) == 1 and len(spans) == 3, "expected one trace of three spans"
PY
fi
