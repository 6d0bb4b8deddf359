//! crds/ must be exactly what the Rust types generate: a changed type without
//! `make crds` fails here, before a cluster ever sees a stale schema.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut expected_files = Vec::new();
    for crd in runbook_operator::crds::all() {
        let name = runbook_operator::crds::file_name(&crd);
        let generated = runbook_operator::crds::to_yaml(&crd).expect("CRD serializes");
        let committed = std::fs::read_to_string(dir.join(&name))
            .unwrap_or_else(|_| panic!("crds/{name} is missing: run `make crds`"));
        assert!(
            committed == generated,
            "crds/{name} differs from the Rust types: run `make crds` and commit the result"
        );
        expected_files.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/ holds files no type generates"
    );
}

/// The chart ships the same CRDs in charts/runbook-operator/crds/ (Helm installs that
/// directory): byte for byte what crds/ holds, which `make crds` keeps so.
#[test]
fn chart_crds_match_crds_dir() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let list = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|_| panic!("{} exists", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let ours = list(&root.join("crds"));
    let chart = list(&root.join("charts/runbook-operator/crds"));
    assert_eq!(
        chart, ours,
        "charts/runbook-operator/crds/ must hold the same files as crds/: run `make crds`"
    );
    for name in ours {
        let expected = std::fs::read(root.join("crds").join(&name)).expect("read crds/");
        let shipped = std::fs::read(root.join("charts/runbook-operator/crds").join(&name))
            .expect("read the chart's crds/");
        assert!(
            shipped == expected,
            "charts/runbook-operator/crds/{name} differs from crds/{name}: run `make crds`"
        );
    }
}

/// docs/reference.md is rendered from the same CRDs: a changed type without `make docs` (or
/// `make crds`, which runs it) fails here.
#[test]
fn reference_doc_matches_the_crds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("docs/reference.md is missing: run `make docs`"));
    let generated = runbook_operator::reference::render(&runbook_operator::crds::all());
    assert!(
        committed == generated,
        "docs/reference.md differs from the CRDs: run `make docs` and commit the result"
    );
}
