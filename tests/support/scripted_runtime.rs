//! A runtime whose failures are chosen by the test, counting every call. Shared by the
//! thread-pod tests and the fixture's child-hosted runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podvisor::runtime::{Runtime, RuntimeContext, RuntimeError};

/// Where the runtime fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    Nothing,
    Construct,
    Setup,
    Run,
    Teardown,
    Cancel,
    IgnoreCancel,
    ReturnAtOnce,
    SlowSetup,
}

impl Fail {
    pub fn parse(text: &str) -> Option<Fail> {
        Some(match text {
            "nothing" => Fail::Nothing,
            "construct" => Fail::Construct,
            "setup" => Fail::Setup,
            "run" => Fail::Run,
            "teardown" => Fail::Teardown,
            "cancel" => Fail::Cancel,
            "ignore-cancel" => Fail::IgnoreCancel,
            "return" => Fail::ReturnAtOnce,
            "slow-setup" => Fail::SlowSetup,
            _ => return None,
        })
    }
}

#[derive(Debug, Default)]
pub struct Calls {
    pub construct: AtomicUsize,
    pub setup: AtomicUsize,
    pub run: AtomicUsize,
    pub cancel: AtomicUsize,
    pub teardown: AtomicUsize,
}

impl Calls {
    /// (construct, setup, run_forever, cancel, teardown)
    pub fn counts(&self) -> [usize; 5] {
        [
            self.construct.load(Ordering::SeqCst),
            self.setup.load(Ordering::SeqCst),
            self.run.load(Ordering::SeqCst),
            self.cancel.load(Ordering::SeqCst),
            self.teardown.load(Ordering::SeqCst),
        ]
    }
}

pub struct Scripted {
    fail: Fail,
    calls: Arc<Calls>,
    log: fn(&str),
}

impl Scripted {
    /// Builds the runtime (counting the construction), failing if asked to.
    pub fn build(fail: Fail, calls: Arc<Calls>, log: fn(&str)) -> Result<Scripted, RuntimeError> {
        calls.construct.fetch_add(1, Ordering::SeqCst);
        log("call construct");
        if fail == Fail::Construct {
            return Err("bad config".into());
        }
        Ok(Scripted { fail, calls, log })
    }
}

impl Runtime for Scripted {
    fn setup(&self, _ctx: &RuntimeContext) -> Result<(), RuntimeError> {
        self.calls.setup.fetch_add(1, Ordering::SeqCst);
        (self.log)("call setup");
        match self.fail {
            Fail::Setup => Err("port 80 in use".into()),
            Fail::SlowSetup => {
                std::thread::sleep(Duration::from_millis(1500));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
        self.calls.run.fetch_add(1, Ordering::SeqCst);
        (self.log)("call run_forever");
        match self.fail {
            Fail::Run => Err("worker crashed".into()),
            Fail::ReturnAtOnce => Ok(()),
            Fail::IgnoreCancel => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            _ => {
                ctx.wait_cancelled();
                Ok(())
            }
        }
    }

    fn cancel(&self) -> Result<(), RuntimeError> {
        self.calls.cancel.fetch_add(1, Ordering::SeqCst);
        (self.log)("call cancel");
        if self.fail == Fail::Cancel {
            return Err("cancel refused".into());
        }
        Ok(())
    }

    fn teardown(&self) -> Result<(), RuntimeError> {
        self.calls.teardown.fetch_add(1, Ordering::SeqCst);
        (self.log)("call teardown");
        if self.fail == Fail::Teardown {
            return Err("disk full".into());
        }
        Ok(())
    }
}
