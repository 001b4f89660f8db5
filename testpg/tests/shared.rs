//! The shared server: one server, a database of its own per caller, dropped with it; started detached, replaced
//! when dead, stopped by `stop`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use rollcage_testpg::{DIR_ENV, Shared, cluster, shared_database};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn connect(url: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Client::connect(url, postgres::NoTls)
}

/// Whether a table `name` exists in the database at `url`.
fn has_table(url: &str, name: &str) -> Result<bool, postgres::Error> {
    let row = connect(url)?.query_one("SELECT to_regclass($1)::text IS NOT NULL", &[&name])?;
    row.try_get(0)
}

#[test]
fn two_shared_databases_are_two_databases_on_one_server() -> TestResult {
    let a = shared_database()?;
    let b = shared_database()?;
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
    assert_eq!(a.admin_url(), b.admin_url(), "not the same server");
    connect(a.url())?.batch_execute("CREATE TABLE only_in_a (x int)")?;
    assert!(has_table(a.url(), "only_in_a")?);
    assert!(
        !has_table(b.url(), "only_in_a")?,
        "a table made in one database is in the other"
    );
    Ok(())
}

#[test]
fn a_dropped_database_is_gone_even_with_a_session_open() -> TestResult {
    let db = shared_database()?;
    let (name, admin) = (db.name().to_owned(), db.admin_url().to_owned());
    let exists = |name: &str| -> Result<bool, postgres::Error> {
        connect(&admin)?
            .query_one(
                "SELECT count(*) = 1 FROM pg_database WHERE datname = $1",
                &[&name],
            )?
            .try_get(0)
    };
    assert!(exists(&name)?);
    let _session = connect(db.url())?;
    drop(db);
    assert!(!exists(&name)?, "database {name} is still there");
    Ok(())
}

/// Store tests are async: the blocking client must not start its runtime on the test's runtime thread.
#[tokio::test]
async fn a_shared_database_can_be_made_and_dropped_inside_a_tokio_runtime() -> TestResult {
    let db = shared_database()?;
    assert!(db.url().ends_with(db.name()));
    drop(db);
    Ok(())
}

/// A private home for a shared server, stopped at the end of the test even when it fails.
struct Home {
    tmp: tempfile::TempDir,
}

impl Home {
    fn new() -> Result<Home, std::io::Error> {
        let tmp = tempfile::tempdir()?;
        // The `postgres` user (when we are root) must reach the server's dir below.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(Home { tmp })
    }

    fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("home")
    }

    fn shared(&self) -> Shared {
        Shared::at(self.dir())
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.shared().stop();
    }
}

fn pid_of(home: &Path) -> Result<i32, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(home.join("server/data/postmaster.pid"))?;
    Ok(text
        .lines()
        .next()
        .ok_or("empty postmaster.pid")?
        .trim()
        .parse()?)
}

#[test]
fn a_shared_server_outlives_the_process_that_started_it_until_stopped() -> TestResult {
    let home = Home::new()?;
    // `output()` also proves the server keeps none of the starter's pipes: it would wait for them to close.
    let started = Command::new(env!("CARGO_BIN_EXE_rollcage-testpg"))
        .arg("start")
        .env(DIR_ENV, home.dir())
        .output()?;
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let url = String::from_utf8(started.stdout)?.trim().to_owned();
    assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
    // The starter has exited; the server answers.
    connect(&url)?.batch_execute("SELECT 1")?;
    // A second start finds it instead of starting another.
    assert_eq!(home.shared().start()?, url);

    let stopped = Command::new(env!("CARGO_BIN_EXE_rollcage-testpg"))
        .arg("stop")
        .env(DIR_ENV, home.dir())
        .output()?;
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert!(connect(&url).is_err(), "a stopped shared server answered");
    assert!(!home.dir().join("server").exists());
    assert!(!home.shared().stop()?, "stop found a server after stop");
    Ok(())
}

#[test]
fn a_dead_recorded_server_is_replaced() -> TestResult {
    let home = Home::new()?;
    let first = home.shared().start()?;
    let pid = pid_of(&home.dir())?;
    let (key, id) = cluster::read_pid_file(&home.dir().join("server"))
        .and_then(|p| p.shm)
        .ok_or("no shared memory segment recorded")?;
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    // Reap it (it is our child) so it is gone, not a zombie.
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)?;
    assert!(connect(&first).is_err());

    let db = home.shared().database()?;
    connect(db.url())?.batch_execute("SELECT 1")?;
    assert_ne!(
        pid_of(&home.dir())?,
        pid,
        "the dead server's record was kept"
    );
    let segments = std::fs::read_to_string("/proc/sysvipc/shm")?;
    assert!(
        !cluster::lists_segment(&segments, key, id),
        "the dead server's shared memory is left"
    );
    Ok(())
}

/// Store tests run in parallel: concurrent callers each get a database of their own.
#[test]
fn parallel_callers_get_distinct_databases() -> TestResult {
    let start = std::time::Instant::now();
    let dbs = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..3)
                        .map(|_| shared_database())
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "a worker panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    eprintln!("24 databases in {:?}", start.elapsed());
    let names: std::collections::BTreeSet<&str> = dbs.iter().map(|d| d.name()).collect();
    assert_eq!(names.len(), 24);
    for db in &dbs {
        connect(db.url())?.batch_execute("SELECT 1")?;
    }
    Ok(())
}
