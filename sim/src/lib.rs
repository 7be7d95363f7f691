//! A deterministic simulator for the podvisor core: a virtual clock, a seeded model of
//! processes with "swarm" faults, and the design's invariants checked after every step
//! (through the core's own reference checker) and liveness checked after healing.
//!
//! One seed reproduces one run exactly: `podvisor-sim --seed S` replays it with a trace.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod deployment;
pub mod driver;
pub mod report;
pub mod rng;
pub mod swarm;
pub mod world;

pub use world::{run, Failure, FailureKind, RunConfig, RunReport};
