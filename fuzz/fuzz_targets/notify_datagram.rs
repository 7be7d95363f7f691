//! Arbitrary bytes into the notify datagram parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| podvisor::fuzzing::notify_datagram(data));
