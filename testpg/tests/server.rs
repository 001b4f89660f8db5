//! A private server: it answers through its URL and its socket, runs as `postgres` when we are root, and is gone
//! after a crash or a drop.

use rollcage_testpg::{Server, cluster};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn select_1(url: &str) -> Result<i32, postgres::Error> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    client.query_one("SELECT 1", &[])?.try_get(0)
}

#[test]
fn a_server_answers_select_1_through_its_url_and_its_socket() -> TestResult {
    let server = Server::start()?;
    assert_eq!(select_1(&server.url())?, 1);
    assert!(
        server.url().starts_with("postgres://postgres@127.0.0.1:"),
        "{}",
        server.url()
    );
    let socket = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.socket_dir().display(),
        server.port()
    );
    assert_eq!(select_1(&socket)?, 1);
    Ok(())
}

#[test]
fn the_server_runs_as_postgres_when_root_else_as_us() -> TestResult {
    let server = Server::start()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .ok_or("no Uid line")?
        .parse()?;
    let expected = if nix::unistd::geteuid().is_root() {
        nix::unistd::User::from_name("postgres")?
            .ok_or("no postgres user")?
            .uid
            .as_raw()
    } else {
        nix::unistd::geteuid().as_raw()
    };
    assert_eq!(uid, expected);
    Ok(())
}

#[test]
fn a_killed_server_refuses_connections_at_once() -> TestResult {
    let mut server = Server::start()?;
    let url = server.url();
    // A session open at the crash goes down with it.
    let mut session = postgres::Client::connect(&url, postgres::NoTls)?;
    let (key, id) = cluster::read_pid_file(server.socket_dir())
        .and_then(|p| p.shm)
        .ok_or("no shared memory segment recorded")?;
    server.kill()?;
    let segments = std::fs::read_to_string("/proc/sysvipc/shm")?;
    assert!(
        !cluster::lists_segment(&segments, key, id),
        "the crashed server's shared memory is left"
    );
    let refused = select_1(&url);
    assert!(refused.is_err(), "a killed server answered: {refused:?}");
    assert!(
        session.simple_query("SELECT 1").is_err(),
        "a session survived the crash"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", server.pid())).exists() || {
            // Reaped or a zombie of ours: not running.
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid()))?;
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        }
    );
    Ok(())
}

#[test]
fn a_dropped_server_is_stopped_and_its_dir_removed() -> TestResult {
    let server = Server::start()?;
    let url = server.url();
    let dir = server.socket_dir().to_owned();
    assert!(dir.join("data/PG_VERSION").exists());
    drop(server);
    assert!(!dir.exists(), "{} is still there", dir.display());
    let refused = select_1(&url);
    assert!(refused.is_err(), "a dropped server answered: {refused:?}");
    Ok(())
}
