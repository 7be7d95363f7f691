//! The deployment machine's mutation switch: deliberate bugs the checker and the
//! simulator must catch.

/// A deliberately wrong variant of the machine, for proving that the checker catches
/// bugs. Never use outside tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeploymentMutation {
    /// A `Ready` dependency is taken as met once the dependency started.
    ReadyMeansStarted,
    /// Every member is asked to close at once, ignoring dependency order.
    CloseAllAtOnce,
    /// Restarts that were due keep happening after the close.
    RestartAfterClose,
    /// The restart budget is ignored.
    IgnoreBudget,
    /// A member stopped on request comes back once its pod is down.
    StoppedComesBack,
    /// A stop with dependents closes the member without waiting for them.
    StopSkipsDependents,
    /// A restart on request keeps the restarts already spent.
    RestartSpendsBudget,
}
