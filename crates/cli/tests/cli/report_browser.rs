//! The HTML report of `dspans view FILE --html OUT` in a real browser:
//! spans exported by the project's exporter (gRPC and HTTP, parents, links
//! within and across traces, attributes with markup) go through `dspans
//! collector`; the report is opened in headless Chromium (`/usr/bin/chromium`;
//! the test fails when it is missing: `apt-get install -y chromium`).
//!
//! Checked through the DOM after the page's script ran: one `.trace-row`
//! per trace, one `.span-row` per span on each trace's page (same trace and
//! span ids), a span's details with its attributes (markup as text) and a
//! link that opens the other trace, and no console messages at all.
//! Another test proves the checks catch a script error in the page. The
//! interactive checks (collapse, search, links clicked, live updates) are
//! in `ui_browser.rs`.

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
    let key = format!(" {name}=\"");
    // The page's elements, not its script's text.
    let main = dom.split_once("<main").map_or("", |(_, m)| m);
    let main = main.split_once("</main>").map_or(main, |(m, _)| m);
    main.split('<')
        .filter(|tag| tag.contains(&open))
        .map(|tag| {
            let start = tag.find(&key).map(|i| i + key.len());
            let start = start.unwrap_or_else(|| panic!("no {name} in <{tag}"));
            tag[start..][..tag[start..].find('"').unwrap()].to_string()
        })
        .collect()
}

/// The report at `route` (`#/trace/ID`, say), through a copy whose script
/// sets that route first: Chromium's `--dump-dom` takes no fragment.
fn chromium_at(report: &Path, route: &str) -> Browser {
    let html = std::fs::read_to_string(report).unwrap();
    let routed = html.replacen(
        "<script id=\"dspans-data\"",
        &format!("<script>location.hash = '{route}';</script><script id=\"dspans-data\""),
        1,
    );
    assert_ne!(html, routed);
    let page = report.with_file_name("report-routed.html");
    std::fs::write(&page, routed).unwrap();
    chromium(&page)
}

#[test]
fn report_in_chromium_lists_the_traces_and_shows_every_span_and_its_details() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (report, spans) = traces_and_report(dir.path());

    // The report as written: the list of traces, nothing on the console.
    let browser = chromium(&report);
    assert!(
        browser.console.is_empty(),
        "console messages from the report: {:#?}",
        browser.console
    );
    let listed: BTreeSet<String> = attribute_values(&browser.dom, "trace-row", "data-trace")
        .into_iter()
        .collect();
    let traces: BTreeSet<String> = spans
        .iter()
        .map(|s| s.split_once('/').unwrap().0.to_string())
        .collect();
    assert_eq!(listed, traces, "one row per trace:\n{}", browser.dom);

    // Each trace's page: one row per span of it.
    for trace in &traces {
        let page = chromium_at(&report, &format!("#/trace/{trace}"));
        assert!(page.console.is_empty(), "{:#?}", page.console);
        let rows: BTreeSet<String> = attribute_values(&page.dom, "span-row", "data-span")
            .into_iter()
            .map(|span| format!("{trace}/{span}"))
            .collect();
        let expected: BTreeSet<String> = spans
            .iter()
            .filter(|s| s.starts_with(trace.as_str()))
            .cloned()
            .collect();
        assert_eq!(rows, expected, "the rows are the trace's spans");
    }

    // A span's details: its attributes (markup stays text) and its link to
    // the other trace's root, which opens that trace.
    let requests = read_json_lines(dir.path().join("traces.jsonl")).unwrap();
    let all = spans_of(&requests);
    let receipt = all.iter().find(|s| s.name == "send receipt").unwrap();
    let route = format!(
        "#/trace/{}?span={}",
        hex(&receipt.trace_id),
        hex(&receipt.span_id)
    );
    let page = chromium_at(&report, &route);
    assert!(!page.dom.contains("<b onclick"), "{}", page.dom);
    assert!(
        page.dom.contains("&lt;b onclick=\"x()\"&gt;"),
        "{}",
        page.dom
    );
    let charge = all
        .iter()
        .find(|s| s.name == "charge card" && s.links.len() == 2)
        .unwrap();
    let route = format!(
        "#/trace/{}?span={}",
        hex(&charge.trace_id),
        hex(&charge.span_id)
    );
    let page = chromium_at(&report, &route);
    let other = &charge.links[1];
    let open = format!(
        "class=\"link-open\" href=\"#/trace/{}?span={}\"",
        hex(&other.trace_id),
        hex(&other.span_id)
    );
    assert!(page.dom.contains(&open), "{}", page.dom);
    assert!(page.dom.contains("after reservation"), "{}", page.dom);
    eprintln!("done after {:?}", started.elapsed());
}

/// The checks above can fail: a script error in the page shows up in the
/// console messages.
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
