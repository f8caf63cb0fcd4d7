//! A real `redis-server` child process on 127.0.0.1, for the tests of the fleet store.
//!
//! The server runs without persistence on a free loopback port and is killed when the
//! handle is dropped. Tests can kill it, pause it (SIGSTOP: connections stay open but
//! nothing answers, the worst case for a client) and start a new one on the same port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process.
pub struct RedisServer {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits (at most 5 s) until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not answer: these tests need a real
    /// Redis, and `scripts/test.sh` installs the Debian package.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        Self::start_on(port)
    }

    /// Starts redis-server on `port` (to bring a killed server back at the same address).
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need a real Redis; \
                     install the Debian package redis-server (scripts/test.sh does)"
                )
            });
        let server = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Whether the server answers `PING` within 200 ms.
    pub fn ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} redis-server failed");
        }
    }

    /// Pauses the server (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server now (SIGKILL; a paused server dies too).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
