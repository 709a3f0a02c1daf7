//! A throwaway PostgreSQL server for the tests of the PostgreSQL backend:
//! one per test process, started on first use from the machine's binaries,
//! on loopback on a free port, its cluster in a temp dir. It stops and the
//! dir goes when the process ends, however it ends.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The superuser every test connects as (trust auth, so no password).
const USER: &str = "postgres";

/// Runs postgres (`$2…`) and removes the cluster dir (`$1`) once it exits.
/// It stops it when its stdin, a pipe the test process holds, reaches
/// EOF: the kernel closes that pipe when the process ends, even killed.
/// A postgres that exits with a `restart` file in the dir (see
/// [`restart`]) starts again after the seconds that file holds; one that
/// exits otherwise (a failed start) ends this too, which the start
/// notices. The running server's pid is in `server.pid`. A background
/// list's stdin is /dev/null, hence fd 3.
const SUPERVISOR: &str = r#"
dir=$1; shift
exec 3<&0
start() { "$@" </dev/null & echo $! > "$dir/server.pid"; }
start "$@"
{ cat <&3 >/dev/null; touch "$dir/stopping"; kill -INT "$(cat "$dir/server.pid")"; } &
watcher=$!
exec 3<&-
while :; do
    wait "$(cat "$dir/server.pid")"
    if [ -e "$dir/stopping" ] || [ ! -e "$dir/restart" ]; then break; fi
    sleep "$(cat "$dir/restart")"
    rm -f "$dir/restart"
    start "$@"
done
kill "$watcher" 2>/dev/null
rm -rf "$dir"
"#;

/// The URL of the test database named after `key` (any text, such as a
/// temp dir's name). The first call for a key creates it; later ones give
/// the same database, data included, so reopening it is a restart.
pub fn database_url(key: &str) -> String {
    let cluster = CLUSTER.get_or_init(Cluster::start);
    let name = database_name(key);
    cluster.create(&name);
    format!("postgres://{USER}@127.0.0.1:{}/{name}", cluster.port)
}

/// Stops the server as a crash would (`immediate` shutdown: no
/// checkpoint, every connection cut) and starts it again after `down`;
/// returns once it accepts connections again. Every database of the
/// process goes down with it.
pub fn restart(down: Duration) {
    let cluster = CLUSTER.get().expect("restart of a server never started");
    let marker = cluster.dir.join("restart");
    std::fs::write(&marker, format!("{:.3}", down.as_secs_f64())).unwrap();
    let pid = std::fs::read_to_string(cluster.dir.join("server.pid")).unwrap();
    let quit = Command::new("kill").args(["-QUIT", pid.trim()]).status().unwrap();
    assert!(quit.success(), "no postgres with pid {pid} to restart");
    // The supervisor removes the marker just before it starts the server.
    let deadline = Instant::now() + Duration::from_secs(60) + down;
    while marker.exists() {
        assert!(Instant::now() < deadline, "postgres was not started again");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.wait_ready(deadline);
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// `t_` and a hash of `key`: a valid identifier, well under the 63 bytes
/// allowed, the same for the same key for the life of the process (the
/// cluster's).
fn database_name(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    format!("t_{:016x}", hasher.finish())
}

/// The running server of this process.
struct Cluster {
    bin: PathBuf,
    port: u16,
    /// The cluster's dir: its data, socket, log and the supervisor's files.
    dir: PathBuf,
    /// The databases created so far; the lock also serialises creating
    /// them, so a second caller with the same key waits for the first.
    databases: Mutex<HashSet<String>>,
    /// The supervisor, which ends only with a failed start.
    supervisor: Mutex<Child>,
    /// The supervisor's stdin, never written: dropped with the process.
    _alive: ChildStdin,
}

impl Cluster {
    /// Creates the cluster and starts its server under the supervisor.
    /// Postgres refuses to run as root, so as root (CI) the cluster and
    /// the supervisor belong to `nobody`, in /tmp (which it can reach; a
    /// short path, too, for the socket).
    fn start() -> Cluster {
        let bin = bindir();
        let owner = is_root().then(nobody);
        let dir = tempfile::Builder::new().prefix("jobhost-pg-").tempdir_in("/tmp").unwrap();
        if let Some((uid, gid)) = owner {
            let chown = Command::new("chown").arg(format!("{uid}:{gid}")).arg(dir.path()).status();
            assert!(chown.unwrap().success(), "chown of {} failed", dir.path().display());
        }
        let as_owner = |program: &Path| {
            let mut command = Command::new(program);
            command.current_dir(dir.path());
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
            command
        };

        let data = dir.path().join("data");
        let initdb = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );

        // A free port now; another process could take it before postgres
        // binds it, which the start reports like any other failure.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log_path = dir.path().join("server.log");
        let log = File::create(&log_path).unwrap();
        let mut supervisor = as_owner(Path::new("sh"));
        supervisor
            .args(["-c", SUPERVISOR, "supervisor"])
            .arg(dir.path())
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            // Many tests open pools at once; and a throwaway cluster
            // needs no durability, the server lives as long as the tests.
            .args(["-c", "max_connections=300", "-c", "fsync=off"])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Out of the test's process group, so a Ctrl-C or a runner's
            // kill reaches only the test process, and the supervisor
            // still cleans up.
            .process_group(0);
        let mut supervisor = supervisor.spawn().unwrap();
        let alive = supervisor.stdin.take().unwrap();
        let dir = dir.keep();

        let cluster = Cluster {
            bin,
            port,
            dir,
            databases: Mutex::new(HashSet::new()),
            supervisor: Mutex::new(supervisor),
            _alive: alive,
        };
        cluster.wait_ready(Instant::now() + Duration::from_secs(60));
        cluster
    }

    /// Waits until the server accepts connections; panics with its log if
    /// the supervisor ended instead (a failed start), or past `deadline`.
    fn wait_ready(&self, deadline: Instant) {
        let port = self.port.to_string();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", USER, "-d", "postgres"])
                .status()
                .unwrap();
            if ready.success() {
                return;
            }
            let exited = self.supervisor.lock().unwrap().try_wait().unwrap().is_some();
            if exited || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                let what = if exited { "exited" } else { "not ready in time" };
                panic!(
                    "postgres on 127.0.0.1:{port} ({}) {what}; its log:\n{log}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    /// Creates database `name` unless this process already has.
    fn create(&self, name: &str) {
        let mut databases = self.databases.lock().unwrap_or_else(PoisonError::into_inner);
        if databases.contains(name) {
            return;
        }
        let psql = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", USER, "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .unwrap();
        assert!(
            psql.status.success(),
            "creating {name}: {}",
            String::from_utf8_lossy(&psql.stderr)
        );
        databases.insert(name.to_string());
    }
}

/// The directory of the PostgreSQL programs: Debian's newest
/// /usr/lib/postgresql/<version>/bin, else that of `initdb` on PATH.
fn bindir() -> PathBuf {
    let debian = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    let newest = debian
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path())))
        .filter(|(_, path)| path.join("bin/initdb").exists())
        .max();
    if let Some((_, path)) = newest {
        return path.join("bin");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let initdb = std::env::split_paths(&path).map(|dir| dir.join("initdb")).find(|p| p.exists());
    let initdb =
        initdb.expect("no PostgreSQL: neither /usr/lib/postgresql/*/bin nor initdb on PATH");
    // Through links (/usr/local/bin/initdb), to where postgres and psql are.
    std::fs::canonicalize(initdb).unwrap().parent().unwrap().to_path_buf()
}

/// Whether this process runs as root (effective uid 0, per /proc).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:")).unwrap();
    uids.split_whitespace().nth(1) == Some("0")
}

/// The uid and gid of `nobody`, from /etc/passwd.
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|line| line.starts_with("nobody:")).expect("no user nobody");
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}
