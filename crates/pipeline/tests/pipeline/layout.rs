//! Store paths: awkward names are encoded into one valid segment each, and
//! every object sits where the layout says.

use dspans_pipeline::layout::{decode_name, encode_name, Layout, LayoutError};
use proptest::prelude::*;

#[test]
fn object_paths_nest_as_documented() {
    let l = Layout::default();
    let item = l.item("gate", "i1");
    assert_eq!(item, "/dspans/pipelines/gate/items/i1");
    assert_eq!(l.items("gate"), "/dspans/pipelines/gate/items");
    assert_eq!(l.buildsets("gate", "i1"), format!("{item}/buildsets"));
    assert_eq!(
        l.buildset("gate", "i1", "bs"),
        format!("{item}/buildsets/bs")
    );
    assert_eq!(
        l.builds("gate", "i1", "bs"),
        format!("{item}/buildsets/bs/builds")
    );
    assert_eq!(
        l.build("gate", "i1", "bs", "b"),
        format!("{item}/buildsets/bs/builds/b")
    );
    assert_eq!(l.trigger_events(), "/dspans/events/trigger");
    assert_eq!(l.result_events("gate"), "/dspans/events/results/gate");
    assert_eq!(l.pipelines(), "/dspans/pipelines");
    assert_eq!(l.change_queues("gate"), "/dspans/pipelines/gate/queues");
    assert_eq!(l.reports("gate"), "/dspans/pipelines/gate/reports");
    assert_eq!(l.report("gate", "i1"), "/dspans/pipelines/gate/reports/i1");
    assert_eq!(l.executor_queue(), "/dspans/executor");
    assert_eq!(l.merger_queue(), "/dspans/merger");
    assert_eq!(l.locks(), "/dspans/locks");
    assert_eq!(l.pipeline_lock("gate"), "/dspans/locks/pipelines/gate");
    assert_eq!(l.components("executor"), "/dspans/components/executor");
    assert_eq!(
        l.component("executor", "ex 1"),
        "/dspans/components/executor/ex%201"
    );
}

#[test]
fn awkward_names_become_one_segment() {
    let l = Layout::default();
    assert_eq!(
        l.change_queue("gate", "org/project"),
        "/dspans/pipelines/gate/queues/org%2Fproject"
    );
    assert_eq!(l.pipeline("a.b-c_d~e"), "/dspans/pipelines/a.b-c_d~e");
    assert_eq!(l.pipeline(".."), "/dspans/pipelines/%2E%2E");
    assert_eq!(l.pipeline("."), "/dspans/pipelines/%2E");
    assert_eq!(l.pipeline(""), "/dspans/pipelines/%");
    assert_eq!(l.pipeline("100%"), "/dspans/pipelines/100%25");
    assert_eq!(l.pipeline("gäte"), "/dspans/pipelines/g%C3%A4te");
    assert_eq!(l.pipeline("a\nb"), "/dspans/pipelines/a%0Ab");
    for name in [
        "org/project",
        "..",
        ".",
        "",
        "100%",
        "gäte",
        "a\nb",
        "%",
        "%2F",
    ] {
        assert_eq!(decode_name(&encode_name(name)).unwrap(), name);
    }
}

#[test]
fn bad_segments_and_roots_are_refused() {
    for bad in ["a/b", "%2", "%zz", "a b", "%FF", "ä"] {
        assert!(
            matches!(decode_name(bad), Err(LayoutError::Segment { .. })),
            "{bad}"
        );
    }
    for root in ["dspans", "/", "/a/", "/a//b", "/a/../b"] {
        let e = Layout::with_root(root).unwrap_err();
        assert!(e.to_string().contains(root), "{e}");
    }
    let l = Layout::with_root("/bench/run-1").unwrap();
    assert_eq!(l.root(), "/bench/run-1");
    assert_eq!(l.item("gate", "i"), "/bench/run-1/pipelines/gate/items/i");
}

proptest! {
    #[test]
    fn any_name_encodes_to_a_valid_segment_and_back(name in any::<String>()) {
        let segment = encode_name(&name);
        prop_assert!(!segment.contains('/') && segment.is_ascii() && !segment.is_empty());
        let path = Layout::default().item(&name, &name);
        prop_assert!(dspans_store::validate_path(&path).is_ok(), "{}", path);
        prop_assert_eq!(decode_name(&segment).unwrap(), name);
    }

    #[test]
    fn decoding_never_panics(segment in any::<String>()) {
        let _ = decode_name(&segment);
    }
}
