//! Runtimes: an object with `setup` / `run_forever` / `cancel` / `teardown` that a pod
//! hosts instead of a command, on its own thread ([`PodConfig::thread`](crate::PodConfig::thread))
//! or inside a child process that calls [`serve`].
//!
//! # The contract
//!
//! - `setup` runs first, on the runtime's own thread (or in the child). If it fails,
//!   neither `run_forever` nor `teardown` runs and the pod's start result is
//!   `FailedToStart` carrying the error's text.
//! - The pod counts as started once `setup` succeeded, and as ready then too, unless
//!   [`Runtime::signals_ready`] says the runtime calls [`RuntimeContext::ready`] itself
//!   (e.g. after binding a port).
//! - `run_forever` blocks until it is cancelled or returns. Whether it fails or returns on
//!   its own, `teardown` still runs.
//! - `cancel` is called from the owner's side, once, when the pod is closed after it
//!   started (it may arrive just before `run_forever` begins; the context's cancellation
//!   flag is set first, so `run_forever` sees it). A close during `setup` only sets
//!   [`RuntimeContext::is_cancelled`]; `run_forever` is then skipped and `teardown` runs.
//! - Failures of `teardown` and `cancel` do not prevent a clean exit; they are reported
//!   (`STATUS=` on the notify socket, the pod's [`status_text`](crate::Pod::status_text)).
//!
//! A thread cannot be stopped from outside: a runtime that ignores `cancel` past the grace
//! period is reported `Killed(ExitStatus::Abandoned)` and its thread is left running,
//! detached; nothing waits for it. In a child process the same runtime is killed for real
//! (`Killed(Signal(9))`).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The error a runtime's methods return.
pub type RuntimeError = Box<dyn std::error::Error + Send + Sync>;

/// Exit code of a runtime host whose `setup` failed (or whose runtime could not be built).
pub const EXIT_SETUP_FAILED: i32 = 3;
/// Exit code of a runtime host whose `run_forever` failed.
pub const EXIT_RUN_FAILED: i32 = 1;

/// Something a pod hosts: see [the module docs](self) for the contract.
///
/// All methods take `&self`: `cancel` is called from another thread while `run_forever`
/// runs, so a runtime keeps its state behind its own locks or atomics.
///
/// # Examples
///
/// ```
/// use podvisor::runtime::{Runtime, RuntimeContext, RuntimeError};
///
/// struct Ticker;
///
/// impl Runtime for Ticker {
///     fn setup(&self, _ctx: &RuntimeContext) -> Result<(), RuntimeError> {
///         Ok(())
///     }
///     fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
///         while !ctx.wait_cancelled_timeout(std::time::Duration::from_millis(100)) {
///             // one tick of work
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Runtime: Send + Sync + 'static {
    /// Prepares the runtime. The pod is started once this returns `Ok`.
    fn setup(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError>;

    /// Serves until cancelled (watch [`RuntimeContext::is_cancelled`] or
    /// [`RuntimeContext::wait_cancelled`], or react to [`Runtime::cancel`]) or done.
    fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError>;

    /// Asks `run_forever` to return. Called once, from the owner's side. The default does
    /// nothing beyond the context's cancellation flag, which is set before this is called.
    fn cancel(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Cleans up after `run_forever` (also when it failed).
    fn teardown(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Whether the runtime calls [`RuntimeContext::ready`] itself; otherwise it is ready as
    /// soon as `setup` succeeded.
    fn signals_ready(&self) -> bool {
        false
    }
}

/// The async flavour of [`Runtime`]: the same contract, with `setup`, `run_forever` and
/// `teardown` as async functions. Wrap it with [`blocking`] to host it anywhere a
/// [`Runtime`] goes; its futures run on the runtime's own thread (under
/// `async_io::block_on`), so they need not be `Send`. `cancel` stays synchronous: it is
/// called from the owner's side while `run_forever` runs, and usually just lets
/// [`RuntimeContext::cancelled`] resolve, which happens anyway.
///
/// # Examples
///
/// ```
/// use podvisor::runtime::{blocking, AsyncRuntime, RuntimeContext, RuntimeError};
/// use podvisor::{End, ExitStatus, Pod, PodConfig};
///
/// struct Idle;
///
/// impl AsyncRuntime for Idle {
///     async fn setup(&self, _ctx: &RuntimeContext) -> Result<(), RuntimeError> {
///         Ok(())
///     }
///     async fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
///         ctx.cancelled().await;
///         Ok(())
///     }
/// }
///
/// let pod = Pod::new(PodConfig::thread("idle", || Ok(blocking(Idle)))).unwrap();
/// pod.start_and_wait_blocking().unwrap();
/// assert_eq!(pod.close_blocking(), End::Closed(ExitStatus::Code(0)));
/// ```
// The futures run on the runtime's own thread, never moved across threads: no `Send`
// bound is needed, which is what this lint warns about.
#[allow(async_fn_in_trait)]
pub trait AsyncRuntime: Send + Sync + 'static {
    /// Prepares the runtime. The pod is started once this returns `Ok`.
    async fn setup(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError>;

    /// Serves until cancelled (await [`RuntimeContext::cancelled`]) or done.
    async fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError>;

    /// Asks `run_forever` to return; see [`Runtime::cancel`].
    fn cancel(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Cleans up after `run_forever` (also when it failed).
    async fn teardown(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// See [`Runtime::signals_ready`].
    fn signals_ready(&self) -> bool {
        false
    }
}

/// An [`AsyncRuntime`] as a [`Runtime`]: each step runs to completion on the runtime's own
/// thread.
#[derive(Debug)]
pub struct Blocking<R>(pub R);

/// Wraps an [`AsyncRuntime`] so it can be hosted like a [`Runtime`].
pub fn blocking<R: AsyncRuntime>(runtime: R) -> Blocking<R> {
    Blocking(runtime)
}

impl<R: AsyncRuntime> Runtime for Blocking<R> {
    fn setup(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
        async_io::block_on(self.0.setup(ctx))
    }

    fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
        async_io::block_on(self.0.run_forever(ctx))
    }

    fn cancel(&self) -> Result<(), RuntimeError> {
        self.0.cancel()
    }

    fn teardown(&self) -> Result<(), RuntimeError> {
        async_io::block_on(self.0.teardown())
    }

    fn signals_ready(&self) -> bool {
        self.0.signals_ready()
    }
}

/// Builds a runtime, on the runtime's own thread or in the child. A failure counts as a
/// setup failure.
pub type RuntimeFactory = Arc<dyn Fn() -> Result<Box<dyn Runtime>, RuntimeError> + Send + Sync>;

/// What a runtime sees of its pod: cancellation and readiness.
pub struct RuntimeContext {
    cancel: Arc<CancelFlag>,
    report: Box<dyn Fn(&str) + Send + Sync>,
}

impl fmt::Debug for RuntimeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeContext")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl RuntimeContext {
    pub(crate) fn new(
        cancel: Arc<CancelFlag>,
        report: Box<dyn Fn(&str) + Send + Sync>,
    ) -> RuntimeContext {
        RuntimeContext { cancel, report }
    }

    /// Whether the pod is being closed.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_set()
    }

    /// Blocks until the pod is being closed.
    pub fn wait_cancelled(&self) {
        self.cancel.wait(None);
    }

    /// Resolves once the pod is being closed (for [`AsyncRuntime`]s; works under any
    /// executor).
    pub async fn cancelled(&self) {
        self.cancel.wait_async().await;
    }

    /// Blocks until the pod is being closed or `timeout` passed; returns whether it is.
    pub fn wait_cancelled_timeout(&self, timeout: Duration) -> bool {
        self.cancel.wait(Some(timeout))
    }

    /// Reports readiness (for runtimes whose [`Runtime::signals_ready`] is true; harmless
    /// otherwise).
    pub fn ready(&self) {
        (self.report)("READY=1");
    }

    /// Reports a status text (`STATUS=`), shown by the owner and by systemd.
    pub fn status(&self, text: &str) {
        (self.report)(&format!("STATUS={}", one_line(text)));
    }
}

/// A one-way flag with blocking and async waits.
#[derive(Debug, Default)]
pub(crate) struct CancelFlag {
    set: AtomicBool,
    lock: Mutex<()>,
    changed: std::sync::Condvar,
    set_event: event_listener::Event,
}

impl CancelFlag {
    pub(crate) fn set(&self) {
        let _guard = crate::handle::lock(&self.lock);
        self.set.store(true, Ordering::SeqCst);
        self.changed.notify_all();
        self.set_event.notify(usize::MAX);
    }

    async fn wait_async(&self) {
        loop {
            // Listen before looking, so a set between the look and the wait is not lost.
            let listener = self.set_event.listen();
            if self.is_set() {
                return;
            }
            listener.await;
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut guard = crate::handle::lock(&self.lock);
        while !self.is_set() {
            match deadline {
                None => guard = self.changed.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    guard = self
                        .changed
                        .wait_timeout(guard, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        true
    }
}

/// Newlines would end a notify field early.
pub(crate) fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Where the owner's side finds the runtime to cancel: cancellation and the start of
/// `run_forever` are ordered by one lock, so `cancel` is called exactly once if and only if
/// `run_forever` was (or is about to be) entered; and `teardown` waits until a `cancel`
/// under way has returned, so the two never overlap.
#[derive(Default)]
pub(crate) struct CancelSlot {
    pub(crate) flag: Arc<CancelFlag>,
    state: Mutex<SlotState>,
    cancel_done: std::sync::Condvar,
}

#[derive(Default)]
struct SlotState {
    running: Option<Arc<dyn Runtime>>,
    cancelling: bool,
}

impl fmt::Debug for CancelSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelSlot")
            .field("flag", &self.flag)
            .finish()
    }
}

impl CancelSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        crate::handle::lock(&self.state)
    }

    /// Called by the host before `run_forever`: false if the pod is already cancelled.
    fn begin_run(&self, runtime: Arc<dyn Runtime>) -> bool {
        let mut state = self.lock();
        if self.flag.is_set() {
            return false;
        }
        state.running = Some(runtime);
        true
    }

    /// Called by the host after `run_forever`: waits for a `cancel` under way.
    fn end_run(&self) {
        let mut state = self.lock();
        state.running = None;
        while state.cancelling {
            state = self
                .cancel_done
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Called by the owner's side: sets the flag, and calls `cancel` if `run_forever` was
    /// entered. A second call does nothing more.
    pub(crate) fn cancel(&self, report: &dyn Fn(&str)) {
        let runtime = {
            let mut state = self.lock();
            self.flag.set();
            let runtime = state.running.take();
            state.cancelling = runtime.is_some();
            runtime
        };
        if let Some(runtime) = runtime {
            if let Err(error) = runtime.cancel() {
                report(&format!(
                    "STATUS=cancel failed: {}",
                    one_line(&error.to_string())
                ));
            }
            self.lock().cancelling = false;
            self.cancel_done.notify_all();
        }
    }
}

/// Runs the contract on the current thread and reports each step through `report` in the
/// notify format. Returns the exit code of a runtime host.
pub(crate) fn host(
    factory: &RuntimeFactory,
    slot: &CancelSlot,
    report: Arc<dyn Fn(&str) + Send + Sync>,
) -> i32 {
    let report_ctx = report.clone();
    let ctx = RuntimeContext::new(slot.flag.clone(), Box::new(move |m| report_ctx(m)));
    let runtime: Arc<dyn Runtime> = match factory() {
        Ok(runtime) => Arc::from(runtime),
        Err(error) => {
            report(&format!(
                "STATUS=construction failed: {}",
                one_line(&error.to_string())
            ));
            return EXIT_SETUP_FAILED;
        }
    };
    if let Err(error) = runtime.setup(&ctx) {
        report(&format!(
            "STATUS=setup failed: {}",
            one_line(&error.to_string())
        ));
        return EXIT_SETUP_FAILED;
    }
    let mut code = 0;
    // Register for cancellation before reporting started: once the owner sees the pod
    // started (or ready), a close always reaches `cancel`. A close that came during setup
    // skips `run_forever`.
    if slot.begin_run(runtime.clone()) {
        if runtime.signals_ready() {
            report(STARTED);
        } else {
            report(&format!("{STARTED}\nREADY=1"));
        }
        if let Err(error) = runtime.run_forever(&ctx) {
            report(&format!(
                "STATUS=run_forever failed: {}",
                one_line(&error.to_string())
            ));
            code = EXIT_RUN_FAILED;
        }
        slot.end_run();
    }
    report("STOPPING=1");
    if let Err(error) = runtime.teardown() {
        report(&format!(
            "STATUS=teardown failed: {}",
            one_line(&error.to_string())
        ));
    }
    code
}

const STARTED: &str = "X_PODVISOR_STARTED=1";

/// Runs a runtime as a supervised child process and exits: call it from `main`.
///
/// It reads `NOTIFY_SOCKET` (set by a podvisor pod configured with
/// [`PodConfig::hosted_runtime`](crate::PodConfig::hosted_runtime), or by systemd with
/// `Type=notify`) and reports there: `X_PODVISOR_STARTED=1` after `setup`, `READY=1`,
/// `STOPPING=1`, and failures as `STATUS=` texts. SIGTERM and SIGINT cancel the runtime.
/// The process exits 0 on a clean end, [`EXIT_SETUP_FAILED`] if the runtime could not be
/// built or set up, and [`EXIT_RUN_FAILED`] if `run_forever` failed. Errors are also
/// written to standard error.
///
/// ```no_run
/// use podvisor::runtime::{serve, Runtime, RuntimeContext, RuntimeError};
///
/// struct Worker;
/// impl Runtime for Worker {
///     fn setup(&self, _: &RuntimeContext) -> Result<(), RuntimeError> { Ok(()) }
///     fn run_forever(&self, ctx: &RuntimeContext) -> Result<(), RuntimeError> {
///         ctx.wait_cancelled();
///         Ok(())
///     }
/// }
///
/// fn main() {
///     serve(|| Ok(Worker));
/// }
/// ```
pub fn serve<R: Runtime>(make: impl Fn() -> Result<R, RuntimeError> + Send + Sync + 'static) -> ! {
    let factory: RuntimeFactory = Arc::new(move || make().map(|r| Box::new(r) as Box<dyn Runtime>));
    let supervisor = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty());
    let socket = std::os::unix::net::UnixDatagram::unbound().ok();
    let report: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |message: &str| {
        if let Some(status) = message.strip_prefix("STATUS=") {
            if status.contains("failed") {
                eprintln!("{status}");
            }
        }
        if let (Some(path), Some(socket)) = (&supervisor, &socket) {
            let _ = crate::notify_socket::send(socket, path, message.as_bytes());
        }
    });
    let slot = Arc::new(CancelSlot::default());
    let for_signals = slot.clone();
    let report_signals = report.clone();
    if let Ok(mut signals) =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
    {
        let _ = std::thread::Builder::new()
            .name("podvisor-signals".into())
            .spawn(move || {
                use futures_lite::StreamExt;
                if futures_lite::future::block_on(signals.next()).is_some() {
                    for_signals.cancel(&*report_signals);
                }
            });
    }
    let code = host(&factory, &slot, report);
    std::process::exit(code)
}
