//! Replays the checked-in fuzz corpora through the fuzz targets' bodies, so CI exercises
//! them on stable.

use std::fs;
use std::path::Path;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn pod_events_corpus() {
    for (name, data) in corpus("pod_events") {
        if let Err(v) = podvisor::fuzzing::run_bytes(&data) {
            panic!("{name}: {v}");
        }
    }
}

#[test]
fn notify_datagram_corpus() {
    for (_, data) in corpus("notify_datagram") {
        podvisor::fuzzing::notify_datagram(&data);
    }
}

#[test]
fn readiness_spec_corpus() {
    for (_, data) in corpus("readiness_spec") {
        podvisor::fuzzing::readiness_spec(&data);
    }
}
