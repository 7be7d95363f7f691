//! Forwarding pods' output to podvisor's own standard output and error.
//!
//! Writing to podvisor's streams may block (a slow terminal, a full pipe, a reader that
//! stopped reading), and the driver thread must never block. So each stream has one writer
//! thread, started on first use, fed through a queue bounded in bytes. When the queue is
//! full, a pod's driver keeps its chunk and stops reading that pod's pipe until the writer
//! has made room: only the pods that forward are slowed (back-pressure through their
//! pipes), never the supervisor.
//!
//! When the reader of a stream goes away (`EPIPE`), forwarding to it stops for good: what
//! pods write is still read (for readiness and their last lines) but dropped, and
//! [`closed`] resolves so that the program can act on it (the `podvisor` command closes its
//! pods and exits 141, as a shell pipeline would).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use event_listener::Event as Notifier;

use crate::core::Stream;

/// Bytes queued for a stream before forwarding pods are made to wait.
const QUEUE_BYTES: usize = 256 * 1024;

pub(crate) struct Sink {
    stream: Stream,
    queue: Mutex<Queue>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes [`flush`] callers.
    drained: Condvar,
    closed: AtomicBool,
    closed_event: Notifier,
}

/// Bytes to write, and the events they come after.
struct Chunk {
    bytes: Vec<u8>,
    after: Option<After>,
}

/// Output read after the first `count` events of `log`: it waits for the subscriber that
/// orders output ([`Events::order_output`](crate::events::Events::order_output)) to deal
/// with them, until `deadline`.
pub(crate) struct After {
    pub(crate) log: std::sync::Arc<crate::events::EventLog>,
    pub(crate) count: u64,
    pub(crate) deadline: std::time::Instant,
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    /// Drivers waiting for room.
    waiting: Vec<Waker>,
    writer_started: bool,
    /// Bytes ever queued, and ever taken by the writer (written, or lost to an error):
    /// what was queued before a moment is written once `taken` reaches `queued` of then.
    queued: u64,
    taken: u64,
    /// The writer waits for the subscriber that orders output to deal with the events
    /// before its next chunk (those of this log before this count): a note written by that
    /// subscriber must not wait for it.
    waiting_for: Option<(std::sync::Arc<crate::events::EventLog>, u64)>,
}

impl Sink {
    fn new(stream: Stream) -> Sink {
        Sink {
            stream,
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            drained: Condvar::new(),
            closed: AtomicBool::new(false),
            closed_event: Notifier::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        crate::handle::lock(&self.queue)
    }

    /// Queues `bytes` for writing. Returns `Pending` (and wakes `cx` once there is room)
    /// when the queue is full; the caller keeps the bytes and offers them again. Once the
    /// stream is closed, everything is accepted and dropped.
    /// `after` says which events the bytes were read after.
    /// The first `reserved` of the bytes were counted already ([`Sink::reserve`]).
    pub(crate) fn poll_send(
        &'static self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        reserved: usize,
        after: impl FnOnce() -> Option<After>,
    ) -> Poll<()> {
        if bytes.is_empty() || self.is_closed() {
            return Poll::Ready(());
        }
        let mut queue = self.lock();
        if queue.bytes > 0 && queue.bytes + bytes.len() > QUEUE_BYTES {
            if !queue.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                queue.waiting.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        queue.bytes += bytes.len();
        queue.queued += (bytes.len() - reserved.min(bytes.len())) as u64;
        queue.chunks.push_back(Chunk {
            bytes: bytes.to_vec(),
            after: after(),
        });
        drop(queue);
        self.start_writer();
        self.work.notify_one();
        Poll::Ready(())
    }

    /// Queues `bytes` whatever the room (what a pod wrote before it exited must not be
    /// lost; the amount is bounded by the caller).
    pub(crate) fn send_now(&'static self, bytes: &[u8], reserved: usize, after: Option<After>) {
        if bytes.is_empty() || self.is_closed() {
            return;
        }
        let mut queue = self.lock();
        queue.bytes += bytes.len();
        queue.queued += (bytes.len() - reserved.min(bytes.len())) as u64;
        queue.chunks.push_back(Chunk {
            bytes: bytes.to_vec(),
            after,
        });
        drop(queue);
        self.start_writer();
        self.work.notify_one();
    }

    /// Counts `n` bytes read but not queued yet (waiting for room) as queued: an event
    /// that happens meanwhile comes after them, so its line waits for them.
    pub(crate) fn reserve(&self, n: usize) {
        if n > 0 && !self.is_closed() {
            self.lock().queued += n as u64;
        }
    }

    fn start_writer(&'static self) {
        let mut queue = self.lock();
        if queue.writer_started {
            return;
        }
        queue.writer_started = true;
        drop(queue);
        let started = std::thread::Builder::new()
            .name(match self.stream {
                Stream::Stdout => "podvisor-stdout".into(),
                Stream::Stderr => "podvisor-stderr".into(),
            })
            .spawn(move || self.write_forever());
        if started.is_err() {
            // No thread, no forwarding: behave as a closed stream rather than block.
            self.close();
        }
    }

    /// Waits until everything queued has been written (or the stream closed), until
    /// `deadline` at the latest.
    fn flush(&self, deadline: std::time::Instant) {
        self.wait_drained(deadline, |queue| queue.bytes > 0);
    }

    /// Waits until what was queued before this call has been written (or the stream
    /// closed), until `deadline` at the latest. Unlike [`Sink::flush`], output queued
    /// meanwhile (a pod that keeps writing) does not make it wait longer.
    fn flush_queued(&self, deadline: std::time::Instant) {
        let target = self.lock().queued;
        let stream = self.stream;
        self.wait_drained(deadline, |queue| {
            // Output held for events the caller may be the one to deal with: not waited
            // for (the note is not about an event, so no order is lost).
            let held = queue.waiting_for.as_ref().is_some_and(|(log, count)| {
                log.holds(*count, |lines| lines == stream || same_file())
            });
            queue.taken < target && !held
        });
    }

    /// Waits until the first `target` bytes ever queued have been written (or the stream
    /// closed), until `deadline` at the latest.
    fn flush_to(&self, target: u64, deadline: std::time::Instant) {
        self.wait_drained(deadline, |queue| queue.taken < target);
    }

    /// Waits while `pending` holds of the queue and the stream is open, until `deadline`.
    fn wait_drained(&self, deadline: std::time::Instant, pending: impl Fn(&Queue) -> bool) {
        let mut queue = self.lock();
        while pending(&queue) && !self.is_closed() {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return;
            };
            queue = self
                .drained
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let waiting = {
            let mut queue = self.lock();
            queue.chunks.clear();
            queue.bytes = 0;
            std::mem::take(&mut queue.waiting)
        };
        waiting.into_iter().for_each(Waker::wake);
        self.drained.notify_all();
        self.closed_event.notify(usize::MAX);
    }

    fn write_forever(&self) {
        loop {
            let chunk = {
                let mut queue = self.lock();
                loop {
                    if let Some(chunk) = queue.chunks.pop_front() {
                        break chunk;
                    }
                    queue = self.work.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
            };
            if let Some(after) = &chunk.after {
                let stream = self.stream;
                self.lock().waiting_for = Some((after.log.clone(), after.count));
                self.drained.notify_all();
                after.log.wait_dealt(after.count, after.deadline, |lines| {
                    lines == stream || same_file()
                });
                self.lock().waiting_for = None;
            }
            let written = write_through(self.stream, &chunk.bytes);
            if let Err(error) = written {
                if error.kind() == io::ErrorKind::BrokenPipe {
                    self.close();
                    return;
                }
                // Anything else (a full disk, say) loses this chunk only.
            }
            let waiting = {
                let mut queue = self.lock();
                queue.bytes -= chunk.bytes.len();
                queue.taken += chunk.bytes.len() as u64;
                std::mem::take(&mut queue.waiting)
            };
            waiting.into_iter().for_each(Waker::wake);
            self.drained.notify_all();
        }
    }
}

/// Writes and flushes at once: a prompt or a `\r` progress line must show without waiting
/// for a newline.
fn write_all(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// What podvisor's terminal shows at its bottom, and whether a line is half written.
#[derive(Default)]
struct Screen {
    /// The status line, when one is kept (on standard error).
    status: Option<String>,
    /// It is on the screen now.
    shown: bool,
    /// The last write to each stream did not end its line (a prompt, a progress bar).
    open_line: [bool; 2],
}

/// Every write to podvisor's standard output and error goes through this lock: forwarded
/// output, podvisor's own lines ([`write_own`]) and the status line
/// ([`set_status_line`]). So one writer at a time, and the status line is erased before
/// any other line and drawn again after it, never splitting a line.
fn screen() -> std::sync::MutexGuard<'static, Screen> {
    static SCREEN: OnceLock<Mutex<Screen>> = OnceLock::new();
    SCREEN
        .get_or_init(|| Mutex::new(Screen::default()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Writes `bytes` to podvisor's own `stream`. While a status line is kept, a write that
/// shares its terminal happens under the screen's lock: the status line is erased first
/// and drawn again once every stream is at the start of a line. Otherwise nothing is held
/// while writing, so a stream whose reader does not read (a full pipe) never holds up the
/// other.
fn write_through(stream: Stream, bytes: &[u8]) -> io::Result<()> {
    let shares_terminal = match stream {
        Stream::Stderr => true,
        Stream::Stdout => same_terminal(),
    };
    let mut screen = screen();
    if let Some(last) = bytes.last() {
        screen.open_line[index(stream)] = *last != b'\n';
    }
    if !shares_terminal || (screen.status.is_none() && !screen.shown) {
        drop(screen);
        return match stream {
            Stream::Stdout => write_all(&mut io::stdout().lock(), bytes),
            Stream::Stderr => write_all(&mut io::stderr().lock(), bytes),
        };
    }
    if screen.shown {
        let _ = write_all(&mut io::stderr().lock(), b"\r\x1b[K");
        screen.shown = false;
    }
    let written = match stream {
        Stream::Stdout => write_all(&mut io::stdout().lock(), bytes),
        Stream::Stderr => write_all(&mut io::stderr().lock(), bytes),
    };
    redraw(&mut screen);
    written
}

/// Whether podvisor's standard output and error are one terminal (the same device): only
/// then do writes to one need the status line on the other out of the way. A stdout that
/// is another terminal, stalled, never holds up standard error.
fn same_terminal() -> bool {
    static SAME: OnceLock<bool> = OnceLock::new();
    *SAME.get_or_init(|| {
        let (out, err) = (io::stdout(), io::stderr());
        io::IsTerminal::is_terminal(&out)
            && io::IsTerminal::is_terminal(&err)
            && match (rustix::fs::fstat(&out), rustix::fs::fstat(&err)) {
                (Ok(a), Ok(b)) => a.st_rdev == b.st_rdev && a.st_dev == b.st_dev,
                _ => false,
            }
    })
}

/// Whether podvisor's standard output and error reach the same file, pipe or terminal:
/// then the order of their writes is what a reader sees.
fn same_file() -> bool {
    static SAME: OnceLock<bool> = OnceLock::new();
    *SAME.get_or_init(|| {
        match (
            rustix::fs::fstat(io::stdout()),
            rustix::fs::fstat(io::stderr()),
        ) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        }
    })
}

fn other_stream(stream: Stream) -> Stream {
    match stream {
        Stream::Stdout => Stream::Stderr,
        Stream::Stderr => Stream::Stdout,
    }
}

fn redraw(screen: &mut Screen) {
    if screen.shown || screen.open_line.contains(&true) {
        return;
    }
    if let Some(status) = &screen.status {
        let _ = write_all(&mut io::stderr().lock(), status.as_bytes());
        screen.shown = true;
    }
}

/// Writes one of podvisor's own lines (a newline is added) to its `stream`, through the
/// same lock as forwarded output, so that it never splits a pod's line nor the status
/// line. Errors (a closed stream) are ignored: podvisor never panics on its own output.
pub fn write_own(stream: Stream, line: &str) {
    // Forwarded output queued before this line was read before it: it is written first
    // (on this stream, and on the other one when both reach the same file or terminal),
    // so that a command's last lines never come after podvisor's line about its end.
    let deadline = std::time::Instant::now() + ORDER_LIMIT;
    sink(stream).flush_queued(deadline);
    if same_file() {
        sink(other_stream(stream)).flush_queued(deadline);
    }
    write_line(stream, line);
}

/// Writes podvisor's own line about `event` (a newline is added) to its `stream`, as
/// [`write_own`] does, after the forwarded output read before the event — and only that:
/// output read after it (which may be waiting for this line, see
/// [`Events::order_output`](crate::events::Events::order_output)) is not waited for.
pub fn write_event_line(stream: Stream, line: &str, event: &crate::events::LifecycleEvent) {
    let deadline = std::time::Instant::now() + ORDER_LIMIT;
    sink(stream).flush_to(event.output_at[index(stream)], deadline);
    if same_file() {
        let other = other_stream(stream);
        sink(other).flush_to(event.output_at[index(other)], deadline);
    }
    write_line(stream, line);
}

/// How many bytes were ever queued for podvisor's standard output and error.
pub(crate) fn positions() -> [u64; 2] {
    [Stream::Stdout, Stream::Stderr].map(|stream| sink(stream).lock().queued)
}

/// Writes `line` and a newline, ending a pod's unfinished line on the same terminal first.
fn write_line(stream: Stream, line: &str) {
    let mut bytes = Vec::with_capacity(line.len() + 2);
    // A pod's unfinished line (a prompt, a progress bar) on the same terminal is ended
    // first, so podvisor's line does not run on from it.
    let other = other_stream(stream);
    let open = {
        let screen = screen();
        screen.open_line[index(other)] || screen.open_line[index(stream)]
    };
    if open && same_terminal() {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    let _ = write_through(stream, &bytes);
}

/// Keeps `text` (one line, without a newline) at the bottom of the terminal on standard
/// error, below everything written through this module; `None` erases it. Meant for a
/// terminal: the caller decides whether standard error is one.
pub fn set_status_line(text: Option<String>) {
    let mut screen = screen();
    if screen.shown {
        let _ = write_all(&mut io::stderr().lock(), b"\r\x1b[K");
        screen.shown = false;
    }
    screen.status = text;
    redraw(&mut screen);
}

/// The sink of podvisor's own `stream`.
pub(crate) fn sink(stream: Stream) -> &'static Sink {
    static STDOUT: OnceLock<Sink> = OnceLock::new();
    static STDERR: OnceLock<Sink> = OnceLock::new();
    match stream {
        Stream::Stdout => STDOUT.get_or_init(|| Sink::new(Stream::Stdout)),
        Stream::Stderr => STDERR.get_or_init(|| Sink::new(Stream::Stderr)),
    }
}

/// Whether forwarding to podvisor's own `stream` stopped because its reader went away
/// (`EPIPE`).
pub fn is_closed(stream: Stream) -> bool {
    sink(stream).is_closed()
}

/// Resolves once forwarding to podvisor's own `stream` stopped because its reader went away
/// (`EPIPE` on a write of forwarded output); at once if it already has. It never resolves
/// for a stream nothing is forwarded to.
///
/// # Examples
///
/// ```no_run
/// use podvisor::core::Stream;
///
/// # futures_lite::future::block_on(async {
/// podvisor::forward::closed(Stream::Stdout).await;
/// eprintln!("nobody reads our output any more");
/// # });
/// ```
pub async fn closed(stream: Stream) {
    let sink = sink(stream);
    loop {
        if sink.is_closed() {
            return;
        }
        let listener = sink.closed_event.listen();
        if sink.is_closed() {
            return;
        }
        listener.await;
    }
}

/// How long [`write_own`] and [`write_event_line`] wait for forwarded output queued before
/// their line (a reader that does not read delays podvisor's own lines by this much at
/// most), and how long output read after an event waits for the subscriber that orders
/// output ([`Events::order_output`](crate::events::Events::order_output)).
pub const ORDER_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long [`flush`] waits for a reader that does not read.
pub const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until the forwarded output queued so far for podvisor's standard output and error
/// has been written, its reader went away, or [`FLUSH_LIMIT`] passed (a reader that is
/// alive but does not read must not keep the process from exiting; what is left is
/// lost). Call it before the process exits: forwarded output is written by a thread of
/// its own, and `std::process::exit` does not wait for it. Output of pods still running
/// may follow.
pub fn flush() {
    let deadline = std::time::Instant::now() + FLUSH_LIMIT;
    sink(Stream::Stdout).flush(deadline);
    sink(Stream::Stderr).flush(deadline);
}
