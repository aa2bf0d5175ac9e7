//! The HTML report of `dspans view FILE --html OUT` in a real browser:
//! spans exported by the project's exporter (gRPC and HTTP, parents, links
//! within and across traces, attributes with markup) go through `dspans
//! collector`; the report is opened in headless Chromium (`/usr/bin/chromium`;
//! the test fails when it is missing: `apt-get install -y chromium`).
//!
//! Checked through the DOM after the page's script ran: exactly one
//! `.span-row` per collected span (same trace and span ids), no console
//! messages at all, and, in a copy of the report with a checking script
//! appended, that a click on each row opens its hidden details (ids, parent,
//! attributes, links), a second click closes them and Enter opens them.
//! Another test proves the checks catch a script error in the page.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dspans_otlp::receiver::spans_of;
use dspans_otlp::{read_json_lines, Protocol};
use dspans_test_support::process::{wait_for_exit, Running};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::support::{exporting_provider, wait_for_spans, Collector, DSPANS};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Generous bound for things that normally take milliseconds.
const WAIT: Duration = Duration::from_secs(30);
/// Bound for one Chromium run (normally about a second).
const BROWSER_WAIT: Duration = Duration::from_secs(90);
/// An attribute value that must stay text in the page.
const MARKUP: &str = "<b onclick=\"x()\">'quoted' & \"double\"</b>";

fn provider(protocol: Protocol, addr: SocketAddr, service: &str) -> SdkTracerProvider {
    exporting_provider(protocol, addr, service, 10_000, Vec::new())
}

/// One trace of four spans: a root with two children, the second linked to
/// the first (and to `other`, a span of another trace, when given), and a
/// grandchild whose attribute holds markup. Returns the root's context.
fn emit(provider: &SdkTracerProvider, other: Option<SpanContext>) -> SpanContext {
    let tracer = provider.tracer("report-browser-test");
    let root = tracer
        .span_builder("checkout")
        .with_attributes([KeyValue::new("order.items", 3i64)])
        .start(&tracer);
    let root_context = root.span_context().clone();
    let root_cx = opentelemetry::Context::new().with_span(root);
    let mut reserve = tracer.start_with_context("reserve stock", &root_cx);
    reserve.set_attribute(KeyValue::new("result", "SUCCESS"));
    let reserved = reserve.span_context().clone();
    reserve.end();
    let mut links = vec![Link::new(
        reserved,
        vec![KeyValue::new("link.reason", "after reservation")],
        0,
    )];
    if let Some(other) = other {
        links.push(Link::with_context(other));
    }
    let charge = tracer
        .span_builder("charge card")
        .with_links(links)
        .start_with_context(&tracer, &root_cx);
    let charge_cx = opentelemetry::Context::new().with_span(charge);
    let mut receipt = tracer.start_with_context("send receipt", &charge_cx);
    receipt.set_attribute(KeyValue::new("note", MARKUP));
    receipt.end();
    charge_cx.span().end();
    root_cx.span().end();
    root_context
}

/// Collects two traces (gRPC and HTTP) into `dir/traces.jsonl`, renders
/// `dir/report.html`; returns the report and every span as
/// `trace id/span id` (hex).
fn traces_and_report(dir: &Path) -> (PathBuf, BTreeSet<String>) {
    let out = dir.join("traces.jsonl");
    let collector = Collector::start_anywhere(&out);
    let (grpc, http) = (collector.grpc, collector.http);
    let grpc_provider = provider(Protocol::Grpc, grpc, "shop-grpc");
    let first = emit(&grpc_provider, None);
    grpc_provider.shutdown().unwrap();
    let http_provider = provider(Protocol::HttpProtobuf, http, "shop-http");
    emit(&http_provider, Some(first));
    http_provider.shutdown().unwrap();
    wait_for_spans(&out, 8, WAIT);

    let spans: BTreeSet<String> = spans_of(&read_json_lines(&out).unwrap())
        .iter()
        .map(|s| format!("{}/{}", hex(&s.trace_id), hex(&s.span_id)))
        .collect();
    assert_eq!(spans.len(), 8, "{spans:?}");

    let report = dir.join("report.html");
    let view = Command::new(DSPANS)
        .arg("view")
        .arg(&out)
        .arg("--html")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        view.status.success(),
        "dspans view failed: {}",
        String::from_utf8_lossy(&view.stderr)
    );
    (report, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What headless Chromium made of a page.
struct Browser {
    /// The DOM after the page's scripts ran, serialized.
    dom: String,
    /// Console messages the page produced, as Chromium logs them.
    console: Vec<String>,
}

/// Console messages in Chromium's `--enable-logging=stderr` output, e.g.
/// `[1:1:1124/235957.445804:INFO:CONSOLE:1] "Uncaught …", source: … (1)`
/// (older versions: `INFO:CONSOLE(1)]`).
fn console_messages(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|line| {
            line.split_once(']')
                .is_some_and(|(head, _)| head.contains(":CONSOLE"))
        })
        .map(str::to_string)
        .collect()
}

/// Opens `page` in headless Chromium with a fresh profile and returns its
/// DOM once scripts ran, and its console messages.
fn chromium(page: &Path) -> Browser {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test needs Chromium; \
         run `apt-get install -y chromium` (as root)"
    );
    let profile = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=2000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {CHROMIUM} ({e}); run `apt-get install -y chromium` (as root)")
        });
    let mut running = Running(child);
    let status = wait_for_exit(&mut running.0, BROWSER_WAIT).unwrap_or_else(|| {
        panic!(
            "chromium did not finish within {BROWSER_WAIT:?}; stderr:\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    let dom = std::fs::read_to_string(&stdout).unwrap();
    let stderr = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        status.success() && dom.contains("</html>"),
        "chromium failed ({status}); stderr:\n{stderr}\nstdout:\n{dom}"
    );
    Browser {
        dom,
        console: console_messages(&stderr),
    }
}

/// Values of attribute `name` on elements whose class list starts with
/// `class`, in a DOM serialized by Chromium (attributes double-quoted).
fn attribute_values(dom: &str, class: &str, name: &str) -> Vec<String> {
    let open = format!("class=\"{class}");
    dom.split('<')
        .filter(|tag| tag.starts_with("div ") && tag.contains(&open))
        .map(|tag| {
            let key = format!(" {name}=\"");
            let start = tag.find(&key).map(|i| i + key.len());
            let start = start.unwrap_or_else(|| panic!("row without {name}: <{tag}"));
            tag[start..][..tag[start..].find('"').unwrap()].to_string()
        })
        .collect()
}

/// Records errors before the page's own script runs.
const CAPTURE: &str = r#"<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
(function () {
  var error = console.error;
  console.error = function () {
    window.__errors.push(Array.prototype.join.call(arguments, ' '));
    error.apply(console, arguments);
  };
})();
</script>"#;

/// Runs after the page's own script: clicks every row, then writes what
/// it saw as JSON into `<pre id="browser-check">`.
const CHECK: &str = r#"<script>
(function () {
  var rows = [], problems = [];
  document.querySelectorAll('.span-row').forEach(function (row) {
    var id = row.getAttribute('data-trace-id') + '/' + row.getAttribute('data-span-id');
    var detail = row.nextElementSibling;
    if (!detail || !detail.classList.contains('span-detail')) {
      problems.push(id + ': no .span-detail after the row'); return;
    }
    if (!detail.hidden) { problems.push(id + ': details shown before a click'); }
    row.click();
    if (detail.hidden || !row.classList.contains('open')) { problems.push(id + ': a click did not open'); }
    var text = detail.innerText;
    row.click();
    if (!detail.hidden) { problems.push(id + ': a second click did not close'); }
    row.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    if (detail.hidden) { problems.push(id + ': Enter did not open'); }
    rows.push({ id: id, parent: row.getAttribute('data-parent-span-id'), detail: text });
  });
  var out = document.createElement('pre');
  out.id = 'browser-check';
  out.textContent = JSON.stringify({ rows: rows, problems: problems, errors: window.__errors });
  document.body.appendChild(out);
})();
</script>"#;

/// The report with [`CAPTURE`] first in `<head>` and [`CHECK`] last in
/// `<body>`, run in Chromium; returns the checking script's result.
fn click_check(report: &Path) -> serde_json::Value {
    let html = std::fs::read_to_string(report).unwrap();
    assert!(html.contains("<head>") && html.contains("</body>"));
    let html = html
        .replacen("<head>", &format!("<head>{CAPTURE}"), 1)
        .replacen("</body>", &format!("{CHECK}</body>"), 1);
    let page = report.with_file_name("report-checked.html");
    std::fs::write(&page, html).unwrap();
    let browser = chromium(&page);
    let (_, rest) = browser
        .dom
        .split_once("<pre id=\"browser-check\">")
        .unwrap_or_else(|| panic!("the checking script did not finish:\n{}", browser.dom));
    let json = rest.split_once("</pre>").unwrap().0;
    let json = json
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    let mut result: serde_json::Value = serde_json::from_str(&json).unwrap();
    result["console"] = browser.console.into();
    result
}

#[test]
fn report_in_chromium_has_one_row_per_span_no_console_errors_and_clickable_details() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (report, spans) = traces_and_report(dir.path());

    // The report as written: rows in the live DOM, nothing on the console.
    let browser = chromium(&report);
    assert!(
        browser.console.is_empty(),
        "console messages from the report: {:#?}",
        browser.console
    );
    let traces = attribute_values(&browser.dom, "span-row", "data-trace-id");
    let ids = attribute_values(&browser.dom, "span-row", "data-span-id");
    assert_eq!(ids.len(), spans.len(), "one row per span:\n{}", browser.dom);
    let rows: BTreeSet<String> = traces
        .iter()
        .zip(&ids)
        .map(|(t, s)| format!("{t}/{s}"))
        .collect();
    assert_eq!(rows, spans, "the rows are the collected spans");
    // The markup in an attribute stayed text: no element came of it.
    assert!(!browser.dom.contains("<b onclick"), "{}", browser.dom);
    assert!(
        browser.dom.contains("&lt;b onclick=\"x()\"&gt;"),
        "{}",
        browser.dom
    );

    // Clicks on the rows, in a copy of the report with a checking script.
    let result = click_check(&report);
    assert_eq!(result["problems"], serde_json::json!([]), "{result:#}");
    assert_eq!(result["errors"], serde_json::json!([]), "{result:#}");
    assert_eq!(result["console"], serde_json::json!([]), "{result:#}");
    let rows = result["rows"].as_array().unwrap();
    let clicked: BTreeSet<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(clicked, spans, "{result:#}");
    for row in rows {
        let (id, detail) = (row["id"].as_str().unwrap(), row["detail"].as_str().unwrap());
        let (trace, span) = id.split_once('/').unwrap();
        assert!(detail.contains(trace) && detail.contains(span), "{row:#}");
        let parent = row["parent"].as_str().unwrap();
        if parent.is_empty() {
            assert!(detail.contains("(root)"), "{row:#}");
        } else {
            assert!(detail.contains(parent), "{row:#}");
        }
        assert!(detail.contains("service.name"), "{row:#}");
    }
    let detail_of = |wanted: &dyn Fn(&str) -> bool| -> Vec<&str> {
        rows.iter()
            .map(|r| r["detail"].as_str().unwrap())
            .filter(|d| wanted(d))
            .collect()
    };
    // Both "charge card" spans show their link, one also the other trace's root.
    let linked = detail_of(&|d| d.contains("Link 1") && d.contains("after reservation"));
    assert_eq!(linked.len(), 2, "{result:#}");
    assert_eq!(detail_of(&|d| d.contains("Link 2")).len(), 1, "{result:#}");
    assert_eq!(detail_of(&|d| d.contains(MARKUP)).len(), 2, "{result:#}");
    eprintln!("done after {:?}", started.elapsed());
}

/// The checks above can fail: a script error in the page shows up in the
/// console messages and in the checking script's errors.
#[test]
fn a_script_error_in_the_page_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = traces_and_report(dir.path());
    let html = std::fs::read_to_string(&report).unwrap();
    let broken = html.replacen(
        "</body>",
        "<script>document.querySelector('.no-such-thing').click();</script></body>",
        1,
    );
    assert_ne!(html, broken);
    std::fs::write(&report, broken).unwrap();

    let browser = chromium(&report);
    assert_eq!(browser.console.len(), 1, "{:#?}", browser.console);
    assert!(
        browser.console[0].contains("Uncaught TypeError"),
        "{:#?}",
        browser.console
    );
    let result = click_check(&report);
    let errors = result["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{result:#}");
    assert!(
        errors[0].as_str().unwrap().contains("TypeError"),
        "{result:#}"
    );
}

#[test]
fn console_messages_are_found_in_chromium_logs() {
    let stderr = "\
[12806:12835:1124/235956.782201:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n\
[12806:12806:1124/235957.443576:INFO:CONSOLE:1] \"hello log\", source: file:///tmp/a.html (1)\n\
[12806:12806:1124/235957.445804:INFO:CONSOLE:1] \"Uncaught ReferenceError: foo is not defined\", source: file:///tmp/a.html (1)\n\
[1:1:0101/000000.000000:ERROR:CONSOLE(7)] \"boom\", source: file:///tmp/a.html (7)\n\
[1:1:0101/000000.000000:WARNING:sandbox.cc:405] message mentioning :CONSOLE later]\n";
    let found = console_messages(stderr);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].contains("hello log"));
    assert!(found[1].contains("Uncaught ReferenceError"));
    assert!(found[2].contains("boom"));
    assert!(console_messages("").is_empty());
}
