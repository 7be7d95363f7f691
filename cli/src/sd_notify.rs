//! podvisor's own readiness report when it runs under systemd (`NOTIFY_SOCKET` set).

use std::os::unix::net::UnixDatagram;

/// The supervisor's notify socket, if podvisor has one.
#[derive(Debug)]
pub struct Supervisor {
    path: std::ffi::OsString,
}

impl Supervisor {
    /// Reads `NOTIFY_SOCKET`.
    pub fn from_env() -> Option<Supervisor> {
        std::env::var_os("NOTIFY_SOCKET")
            .filter(|p| !p.is_empty())
            .map(|path| Supervisor { path })
    }

    /// Sends one datagram; failures are ignored (the supervisor may be gone).
    pub fn notify(&self, message: &str) {
        let Ok(socket) = UnixDatagram::unbound() else {
            return;
        };
        let bytes = self.path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt;
                if let Ok(address) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
                    let _ = socket.send_to_addr(message.as_bytes(), &address);
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = name;
        } else {
            let _ = socket.send_to(message.as_bytes(), &self.path);
        }
    }
}
