//! The runtime API connection: one command line per connection in HAProxy's default non-interactive mode
//! (HAProxy writes the reply and closes), which needs no prompt parsing and cannot leave a session in a
//! half-read state (notes §1.2).

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

/// Longest a single command may take end to end; `show stat` of a large config is the slowest and is far
/// below this, so hitting it means HAProxy is stuck or the socket is not HAProxy's.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply read: `show stat` is about 1 KiB per server; 16 MiB covers thousands of servers.
const MAX_REPLY: u64 = 16 * 1024 * 1024;

/// A HAProxy runtime API socket (worker stats socket with `level admin`).
#[derive(Debug, Clone)]
pub struct RuntimeSocket {
    path: PathBuf,
}

impl RuntimeSocket {
    /// The socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one command line (without newline) and returns the whole reply.
    pub async fn send(&self, line: &str) -> std::io::Result<String> {
        if line.contains('\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a runtime API command must be one line",
            ));
        }
        tracing::debug!(socket = %self.path.display(), command = line, "haproxy runtime API");
        let exchange = async {
            let mut stream = UnixStream::connect(&self.path).await?;
            stream.write_all(format!("{line}\n").as_bytes()).await?;
            let mut reply = Vec::new();
            (&mut stream)
                .take(MAX_REPLY)
                .read_to_end(&mut reply)
                .await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply).into_owned())
        };
        tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no complete reply within {} s", COMMAND_TIMEOUT.as_secs()),
                )
            })?
    }
}
