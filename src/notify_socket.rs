//! The per-pod notify socket: a Unix datagram socket in a private directory, passed to the
//! child as `NOTIFY_SOCKET`, speaking systemd's `sd_notify` format.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_io::Async;
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// Largest datagram read; longer ones are truncated and then rejected by the parser as
/// malformed only if the cut falls badly (systemd itself caps messages at a few KiB).
const MAX_DATAGRAM: usize = 4096;

/// A Unix socket path must fit in `sun_path` (108 bytes on Linux, including the NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug)]
pub(crate) struct NotifySocket {
    dir: PathBuf,
    path: PathBuf,
    socket: Async<UnixDatagram>,
    buf: Vec<u8>,
}

impl NotifySocket {
    /// Binds a new socket in a fresh 0700 directory under `$XDG_RUNTIME_DIR` or the
    /// temporary directory.
    pub(crate) fn bind() -> io::Result<NotifySocket> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("podvisor-{}-{n}", std::process::id());
        let bases = [
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
            Some(std::env::temp_dir()),
            Some(PathBuf::from("/tmp")),
        ];
        let mut last_error = None;
        for base in bases.into_iter().flatten() {
            let dir = base.join(&name);
            let path = dir.join("notify");
            if path.as_os_str().len() > MAX_SOCKET_PATH {
                last_error = Some(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "notify socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                        path.display()
                    ),
                ));
                continue;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            }
            match UnixDatagram::bind(&path).and_then(Async::new) {
                Ok(socket) => {
                    return Ok(NotifySocket {
                        dir,
                        path,
                        socket,
                        buf: vec![0; MAX_DATAGRAM],
                    })
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no directory for the notify socket")))
    }

    /// The socket's path, for `NOTIFY_SOCKET`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram, if one is waiting; registers for a wake-up otherwise.
    /// File descriptors passed along (systemd-notify's barrier) are closed at once.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        loop {
            match self.try_recv_len() {
                Ok(Some(n)) => return Poll::Ready(Ok(&self.buf[..n])),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.socket.poll_readable(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The next datagram already queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> io::Result<Option<&[u8]>> {
        Ok(self.try_recv_len()?.map(|n| &self.buf[..n]))
    }

    fn try_recv_len(&mut self) -> io::Result<Option<usize>> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        match recvmsg(
            self.socket.get_ref(),
            &mut iov,
            &mut control,
            RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(message) => {
                // Dropping the received descriptors closes them, which releases a sender
                // waiting on the barrier.
                for item in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = item {
                        fds.for_each(drop);
                    }
                }
                Ok(Some(message.bytes.min(self.buf.len())))
            }
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(rustix::io::Errno::INTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Sends one datagram to the notify socket at `path` (a filesystem path, or `@name` for
/// Linux's abstract namespace, as systemd may use).
pub(crate) fn send(
    socket: &UnixDatagram,
    path: &std::ffi::OsStr,
    message: &[u8],
) -> io::Result<()> {
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            return socket.send_to_addr(message, &address).map(drop);
        }
        #[cfg(not(target_os = "linux"))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("abstract socket {name:?}"),
        ));
    }
    socket.send_to(message, path).map(drop)
}
