//! Arbitrary text into the readiness-check parser (`tcp:`, `http://`, `file:`, …).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| podvisor::fuzzing::readiness_spec(data));
