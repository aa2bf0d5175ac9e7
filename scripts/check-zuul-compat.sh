#!/usr/bin/env bash
# Checks the other direction of Zuul compatibility: span info written by
# this project is accepted by Zuul's own Python `restoreSpan` and
# `endSavedSpan`, and Zuul then exports the ids, parent, start time,
# links and attributes we saved. Our `kind` key, which Zuul does not know,
# is ignored (Zuul exports every saved span as internal).
#
# Needs PyPI (it installs the published zuul package without its
# dependencies, next to opentelemetry-sdk, into a virtual environment), so it
# is not part of `cargo test`. Usage: bash scripts/check-zuul-compat.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${ZUUL_VENV:-${TMPDIR:-/tmp}/dspans-zuul-venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-deps zuul==14.3.0
    "$venv/bin/pip" install --quiet opentelemetry-sdk==1.45.2 \
        opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http
fi

cargo build --quiet --manifest-path "$root/Cargo.toml" -p dspans-cli
dspans="$root/target/debug/dspans"
cd "$work"
"$dspans" span start BuildSet --start-time 1700000000.123456 >root.json
"$dspans" span start Build --parent-info root.json --start-time 1700000010.5 >child.json
"$dspans" span start QueueItem --start-time 1700000001.25 \
    --link-context "$("$dspans" span context root.json)" --link-attr rel=GerritTriggerEvent \
    --link-context 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 >links.json
"$dspans" span start QueueItem --kind server --start-time 1700000002.5 >kind.json
"$dspans" span start JobRun --attr job=tox-py311 --attr voting=yes --include-attributes >attrs.json
"$dspans" span child MergerJob --context "$("$dspans" span context child.json)" --save >remote.json
# A span file with what `dspans span` keeps beside the span info: events.
"$dspans" span start Deploy --kind client --save events.json >/dev/null
"$dspans" span event events.json checkout --attr ref=main

"$venv/bin/python" - root.json child.json links.json kind.json attrs.json remote.json events.json <<'PY'
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from zuul.lib import tracing

exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource({"service.name": "zuultest"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

checked = 0
for path in sys.argv[1:]:
    info = json.loads(open(path).read())
    tracing.endSavedSpan(info, end_time=1700000100.5, attributes={"result": "SUCCESS"})
    span = exporter.get_finished_spans()[-1]
    ctx = span.get_span_context()
    assert span.name == info["name"], (path, span.name)
    assert ctx.trace_id == info["trace_id"] and ctx.span_id == info["span_id"], path
    assert ctx.trace_flags == info["trace_flags"], path
    assert span.start_time == info["start_time"], (path, span.start_time, info["start_time"])
    assert span.end_time == int(1700000100.5 * 10**9), path
    parent = info.get("parent")
    if parent:
        assert span.parent.span_id == parent["span_id"] and span.parent.is_remote == parent["is_remote"], path
    else:
        assert span.parent is None, path
    assert len(span.links) == len(info.get("links", [])), path
    for link, saved in zip(span.links, info.get("links", [])):
        assert link.context.trace_id == saved["context"]["trace_id"], path
        assert link.context.span_id == saved["context"]["span_id"], path
        assert dict(link.attributes or {}) == saved["attributes"], path
    assert span.kind == trace.SpanKind.INTERNAL, (path, span.kind)
    want = dict(info.get("attributes", {}), result="SUCCESS")
    assert dict(span.attributes) == want, (path, dict(span.attributes), want)
    checked += 1
kinds = [json.loads(open(path).read()).get("kind") for path in sys.argv[1:]]
assert kinds.count("server") == 1 and kinds.count("client") == 1, kinds
assert [e["name"] for e in json.loads(open("events.json").read())["events"]] == ["checkout"]
print(f"zuul 14.3.0 restoreSpan/endSavedSpan accepted {checked} span infos written by dspans")
PY
