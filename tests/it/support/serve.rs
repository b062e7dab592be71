//! `tessera serve` as a child process, on a port the system picks as the server binds it.
//!
//! A port picked beforehand (bind to port 0, read it, close) can be taken by another test's
//! outgoing connection before the child binds it; the child then never becomes ready. So the
//! child binds `127.0.0.1:0` and the test reads the address from its log line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server logs once it listens (src/server.rs), followed by the address.
const LISTENING: &str = "listening (http) addr=";

/// A server child until it says where it listens; killed when dropped.
pub struct Starting {
    child: Option<Child>,
    address: mpsc::Receiver<String>,
    log: Option<JoinHandle<String>>,
}

/// A server child that listens at `base`; killed when dropped.
pub struct ServerProcess {
    pub base: String,
    child: Option<Child>,
    log: Option<JoinHandle<String>>,
}

/// Starts `command` (the binary, with its arguments and environment) bound to a port of the
/// system's choosing, its stderr read here: `ServerProcess::stop` returns all of it. The log
/// filter must let `tessera::server`'s info line through. Stdout is the caller's to set.
pub fn start(mut command: Command) -> Starting {
    let mut child = command
        .env("TESSERA_BIND", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (found, address) = mpsc::channel();
    // Reads to the end, so that a full pipe never stalls the server; bytes that are not
    // UTF-8 do not stop it either.
    let log = std::thread::spawn(move || {
        let mut found = Some(found);
        let mut log = String::new();
        let mut stderr = BufReader::new(stderr);
        let mut line = Vec::new();
        while stderr.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line);
            if let Some(addr) = text
                .split(LISTENING)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
            {
                if let Some(found) = found.take() {
                    let _ = found.send(addr.to_owned());
                }
            }
            log.push_str(&text);
            line.clear();
        }
        log
    });
    Starting {
        child: Some(child),
        address,
        log: Some(log),
    }
}

impl Starting {
    /// The server, once its log names the address it listens on.
    pub fn listening(mut self) -> ServerProcess {
        let addr = match self.address.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(e) => {
                // Exited (or hung) before listening: what it logged says why.
                kill(self.child.take());
                let log = self
                    .log
                    .take()
                    .map(|reader| reader.join().unwrap_or_default())
                    .unwrap_or_default();
                panic!("the server did not log the address it listens on ({e}); its log:\n{log}");
            }
        };
        ServerProcess {
            base: format!("http://{addr}"),
            child: self.child.take(),
            log: self.log.take(),
        }
    }
}

impl ServerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The child, to take its stdout or read its pid.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running until stopped")
    }

    /// Sends SIGTERM, waits for the exit: its status and everything the server logged.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running until stopped");
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = child.wait().expect("the server exits");
        let log = self
            .log
            .take()
            .map(|reader| reader.join().expect("the log reader ends"))
            .unwrap_or_default();
        (status, log)
    }
}

fn kill(child: Option<Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        kill(self.child.take());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        kill(self.child.take());
    }
}
