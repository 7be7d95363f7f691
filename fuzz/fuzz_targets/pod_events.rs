//! Arbitrary specs and event sequences into a checked `PodMachine`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| podvisor::fuzzing::pod_events(data));
