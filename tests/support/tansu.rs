//! A real Kafka-protocol broker for the tests: Tansu with SQLite storage,
//! started from a scratch folder on a free loopback port, and killed when
//! the guard is dropped. `.ci/run` installs it (`cargo install tansu
//! --version 0.6.0 --locked --features libsql`); set `TANSU` to use
//! another binary.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker; stops it on drop.
pub struct Tansu {
    /// Holds `tansu.db` (the storage, kept across restarts) and the log.
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// How many times it was started, to name the log files.
    starts: usize,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("tansu"))
                .find(|f| f.is_file())
        })
        .unwrap_or_default();
    let in_cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    on_path
        .or(in_cargo.filter(|f| f.is_file()))
        .expect("the Kafka tests need the Tansu broker: cargo install tansu --version 0.6.0 --locked --features libsql (or set TANSU)")
}

impl Tansu {
    /// Starts a broker with empty storage on a free loopback port.
    pub fn start() -> Tansu {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut tansu = Tansu {
            dir: tempfile::tempdir().expect("a scratch folder"),
            port,
            child: None,
            starts: 0,
        };
        tansu.spawn();
        tansu
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `host:port` for Kafka clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("broker-{}.log", self.starts)))
                .expect("a log file");
        let child = Command::new(binary())
            .current_dir(self.dir.path())
            .args(["broker", "--listener-url", &self.url()])
            .args(["--advertised-listener-url", &self.url()])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        // Ready when it accepts connections (well under a second); a port
        // taken in the meantime fails here, loudly.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(200),
        )
        .is_err()
        {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tansu exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not start listening: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The newest broker log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("broker-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Creates `topic` with `partitions` partitions (Tansu does not create
    /// topics on first use).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let output = Command::new(binary())
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &self.url()])
            .output()
            .expect("tansu topic create runs");
        assert!(
            output.status.success(),
            "cannot create topic {topic}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Kills the broker (as a crash would) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}
