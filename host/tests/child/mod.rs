//! The real `jobhost serve` binary in a child process, for the tests that
//! kill it or measure it from outside: its examples, a data folder, a known
//! admin token, loopback on any port. Dropping it kills it (SIGKILL).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Lines of the child's log kept to show when it exits badly.
const LOG_LINES: usize = 50;

/// The admin secret the child runs with.
pub const TOKEN: &str = "child-test-admin-0123456789abcdef";

/// A running `jobhost serve`.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:<port>` the API listens on.
    pub base: String,
    /// The last lines it wrote to stderr, kept by `reader`.
    pub log: Arc<Mutex<VecDeque<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts the binary on `data` with `args` besides the defaults above,
    /// and waits until it listens.
    pub fn start(data: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobhost"))
            .args(["serve", "--plugins", jobhost_plugin_artifacts::EXAMPLES_DIR, "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("JOBHOST_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting jobhost serve");
        let stderr = child.stderr.take().unwrap();
        let (address_tx, address) = mpsc::channel();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let kept = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once("http://") {
                    let _ =
                        address_tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut kept = kept.lock().unwrap();
                if kept.len() == LOG_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let address =
            address.recv_timeout(Duration::from_secs(120)).expect("the server never listened");
        Server { child, base: format!("http://{address}"), log, reader: Some(reader) }
    }

    /// Stops it with SIGTERM, as an operator would, and checks it exited 0.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        // The reader ends at the pipe's end, with the log whole.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = Vec::from(self.log.lock().unwrap().clone()).join("\n");
        assert!(status.success(), "jobhost serve exited with {status}; its last lines:\n{log}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
