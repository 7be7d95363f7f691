//! The input chooses the simulator's seed, swarm settings and pod count.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| podvisor_sim::report::fuzz_seed(data));
