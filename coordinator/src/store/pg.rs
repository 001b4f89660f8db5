//! The PostgreSQL backend: a pool of blocking connections, the schema (SQLite's migrations in PostgreSQL's
//! spelling, applied once under an advisory lock by whichever coordinator starts first), and the cross-coordinator
//! notifier (`NOTIFY` inside each write, one `LISTEN`ing connection per coordinator).
//!
//! **Threads.** The `postgres` client drives its socket on a small runtime of its own and must never be called on
//! a tokio worker thread (it would block the executor, and tokio forbids it). So every call runs on a thread that
//! is not one: [`Pg::run`] on a scoped thread for the store's synchronous `write`/`read` (whose closures borrow the
//! caller's data), `spawn_blocking` for batched writes, and a thread of its own for the listener. A connection is
//! also closed (dropped) only on such a thread: [`Pg`]'s `Drop` hands the pool to one.

use super::{StoreError, Touched};
use postgres::fallible_iterator::FallibleIterator;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The channel every coordinator `LISTEN`s on.
pub(crate) const CHANNEL: &str = "rollcage_touched";

/// The advisory-lock key that serialises schema migrations between coordinators starting at once ("rcmg").
const MIGRATION_LOCK: i64 = 0x7263_6d67;

/// PostgreSQL refuses a `NOTIFY` payload of 8000 bytes or more; names are sent in chunks well under it.
const NOTIFY_CHUNK_NAMES: usize = 64;

/// A pooled connection and its prepared statements.
pub(crate) struct PgConn {
    pub(crate) client: postgres::Client,
    pub(crate) stmts: RefCell<HashMap<String, postgres::Statement>>,
}

struct Manager {
    config: postgres::Config,
    tls: Tls,
}

/// How connections are made: plain, or TLS through rustls when the URL asks for it (`sslmode=require`). The server
/// certificate is always verified (libpq's `verify-full`): against the CAs in `sslrootcert=FILE` when the URL names
/// one, else the public web roots.
#[derive(Clone)]
enum Tls {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Tls {
    fn connect(&self, config: &postgres::Config) -> Result<postgres::Client, postgres::Error> {
        match self {
            Tls::Plain => config.connect(postgres::NoTls),
            Tls::Rustls(tls) => config.connect(tls.clone()),
        }
    }
}

/// Split `sslrootcert=FILE` off the URL (the `postgres` crate does not read it) and build the TLS setting the
/// URL's `sslmode` asks for.
fn tls_for(url: &str, shown: &str) -> Result<(String, Tls), StoreError> {
    let open_err = |message: String| StoreError::Open {
        what: shown.to_owned(),
        message,
    };
    let mut parsed = url::Url::parse(url).map_err(|e| open_err(format!("not a URL: {e}")))?;
    let mut root_file = None;
    let mut mode = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "sslrootcert" => {
                root_file = Some(v.into_owned());
                None
            }
            _ => {
                if k == "sslmode" {
                    mode = Some(v.to_string());
                }
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let wants_tls = matches!(
        mode.as_deref(),
        Some("require" | "verify-ca" | "verify-full")
    );
    if !wants_tls {
        if root_file.is_some() {
            return Err(open_err(
                "sslrootcert is given but sslmode is not `require`: add sslmode=require".into(),
            ));
        }
        return Ok((parsed.to_string(), Tls::Plain));
    }
    let mut roots = rustls::RootCertStore::empty();
    match &root_file {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| open_err(format!("sslrootcert {path}: {e}")))?;
            let mut n = 0;
            for cert in <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| open_err(format!("sslrootcert {path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| open_err(format!("sslrootcert {path}: {e}")))?;
                n += 1;
            }
            if n == 0 {
                return Err(open_err(format!(
                    "sslrootcert {path}: no PEM certificate in it"
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| open_err(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((
        parsed.to_string(),
        Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(config)),
    ))
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.tls.connect(&self.config)?,
            stmts: RefCell::default(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// The PostgreSQL store: its pool, and what identifies this coordinator in notifications.
pub(crate) struct Pg {
    pool: Option<r2d2::Pool<Manager>>,
    config: postgres::Config,
    tls: Tls,
    /// The URL without its password, for messages.
    pub(crate) shown: String,
    /// This coordinator's id: its own notifications are not delivered twice.
    pub(crate) id: String,
    stop: Arc<AtomicBool>,
    /// Dropped after the pool (tests: the throwaway database).
    pub(crate) guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing a blocking client runs its runtime: never on a tokio worker thread.
        let pool = self.pool.take();
        let guard = self.guard.take();
        let _ = std::thread::spawn(move || {
            drop(pool);
            drop(guard);
        })
        .join();
    }
}

/// Wrap a postgres error.
pub(crate) fn pg_err(source: postgres::Error) -> StoreError {
    StoreError::Postgres {
        message: describe(&source),
    }
}

/// A postgres error with the server's message, detail and SQL state when there is one.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => e.to_string(),
    }
}

/// `url` without its password.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "postgres://(unparsable URL)".to_owned(),
    }
}

impl Pg {
    /// Connect to `url`, bring the schema to `migrations`' version, and start listening for other coordinators'
    /// notifications (delivered to `hooks`).
    pub(crate) fn open(
        url: &str,
        migrations: &[&str],
        hooks: Arc<Mutex<Vec<super::CommitHook>>>,
    ) -> Result<Self, StoreError> {
        let shown = shown(url);
        let (url, tls) = tls_for(url, &shown)?;
        let config: postgres::Config =
            url.parse().map_err(|e: postgres::Error| StoreError::Open {
                what: shown.clone(),
                message: format!("not a PostgreSQL URL: {e}"),
            })?;
        // Pool size: the API's concurrent writers and readers plus batched report writers; PostgreSQL's default
        // max_connections (100) leaves room for several coordinators.
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            // A burst of reports queues for connections (each waits on its deployment's row lock anyway): waiting
            // is better than failing a report the agent must then send again.
            .connection_timeout(Duration::from_secs(30))
            .build_unchecked(Manager {
                config: config.clone(),
                tls: tls.clone(),
            });
        let id = format!("{:016x}", fastrand::u64(..));
        let pg = Self {
            pool: Some(pool),
            config,
            tls,
            shown,
            id,
            stop: Arc::default(),
            guard: None,
        };
        // The first connection is made directly (not through the pool, which retries for its whole timeout), so
        // a wrong URL, password or certificate fails at once with the server's own reason.
        let (config, tls) = (&pg.config, &pg.tls);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut client = tls.connect(config).map_err(|e| StoreError::Open {
                    what: pg.shown.clone(),
                    message: describe(&e),
                })?;
                migrate(&mut client, migrations)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(StoreError::Postgres {
                    message: "connecting to the database panicked".into(),
                })
            })
        })?;
        pg.listen(hooks)?;
        Ok(pg)
    }

    /// Run `f` on a pooled connection, on a thread that is not a tokio worker (see the module doc).
    pub(crate) fn run<T: Send, E: From<StoreError> + Send>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<T, E> + Send,
    ) -> Result<T, E> {
        std::thread::scope(|s| {
            s.spawn(|| self.run_here(f)).join().unwrap_or_else(|_| {
                Err(E::from(StoreError::Postgres {
                    message: "a database call panicked".into(),
                }))
            })
        })
    }

    /// Run `f` on a pooled connection on the current thread, which must not be a tokio worker (batched writes run
    /// in `spawn_blocking`).
    pub(crate) fn run_here<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<T, E>,
    ) -> Result<T, E> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| StoreError::WriterStopped(self.shown.clone().into()))?;
        let mut conn = pool.get().map_err(|e| StoreError::Open {
            what: self.shown.clone(),
            message: e.to_string(),
        })?;
        f(&mut conn)
    }

    /// The `NOTIFY`s that tell the other coordinators what a transaction touched; sent inside it, so PostgreSQL
    /// delivers them at commit and never for a rollback.
    pub(crate) fn payloads(&self, touched: &Touched) -> Vec<String> {
        let mut out = Vec::new();
        if touched.is_empty() {
            return out;
        }
        let deps: Vec<&String> = touched.deployments.iter().collect();
        let insts: Vec<&String> = touched.instances.iter().collect();
        let chunks = deps
            .len()
            .div_ceil(NOTIFY_CHUNK_NAMES)
            .max(insts.len().div_ceil(NOTIFY_CHUNK_NAMES))
            .max(1);
        for i in 0..chunks {
            let part = Touched {
                deployments: deps
                    .iter()
                    .skip(i * NOTIFY_CHUNK_NAMES)
                    .take(NOTIFY_CHUNK_NAMES)
                    .map(|s| (*s).clone())
                    .collect(),
                instances: insts
                    .iter()
                    .skip(i * NOTIFY_CHUNK_NAMES)
                    .take(NOTIFY_CHUNK_NAMES)
                    .map(|s| (*s).clone())
                    .collect(),
                coordinator_steps: touched.coordinator_steps && i == 0,
                everything: touched.everything && i == 0,
                tokens: touched.tokens && i == 0,
                webhooks: touched.webhooks && i == 0,
            };
            let msg = Notice {
                from: self.id.clone(),
                touched: part,
            };
            if let Ok(s) = serde_json::to_string(&msg) {
                out.push(s);
            }
        }
        out
    }

    /// Start the listener thread: it hears other coordinators' commits and hands them to `hooks`; it reconnects
    /// after a lost connection (waking every hook once, since a notification may have been missed meanwhile).
    fn listen(&self, hooks: Arc<Mutex<Vec<super::CommitHook>>>) -> Result<(), StoreError> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let stop = self.stop.clone();
        let me = self.id.clone();
        let shown = self.shown.clone();
        // The first connection is made before `open` returns, so a wake is never missed after it.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("rollcage-db-listen".into())
            .spawn(move || listener(config, tls, stop, me, shown, hooks, ready_tx))
            .map_err(|e| StoreError::Postgres {
                message: format!("could not start the listener thread: {e}"),
            })?;
        match ready_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Open {
                what: self.shown.clone(),
                message,
            }),
            Err(_) => Err(StoreError::Open {
                what: self.shown.clone(),
                message: "the LISTEN connection did not open within 15 s".into(),
            }),
        }
    }
}

/// One notification's payload.
#[derive(serde::Serialize, serde::Deserialize)]
struct Notice {
    from: String,
    touched: Touched,
}

fn listener(
    config: postgres::Config,
    tls: Tls,
    stop: Arc<AtomicBool>,
    me: String,
    shown: String,
    hooks: Arc<Mutex<Vec<super::CommitHook>>>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let client = tls.connect(&config).and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            Ok(c)
        });
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                if first {
                    let _ = ready.send(Err(describe(&e)));
                    return;
                }
                tracing::warn!(database = %shown, error = %describe(&e), "LISTEN connection lost; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if first {
            first = false;
            let _ = ready.send(Ok(()));
        } else {
            // Reconnected: a notification may have been missed, so every follower re-reads once.
            super::Store::committed(&hooks, &Touched::everything());
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let mut batch = Touched::default();
            let mut broken = false;
            {
                let mut notes = client.notifications();
                // Wait (bounded, to notice `stop`) for the first notification, then take whatever else already
                // arrived without waiting: a wake is delivered as soon as it is heard.
                let first = notes.timeout_iter(Duration::from_millis(500)).next();
                let mut take = |n: postgres::Notification| {
                    if let Ok(notice) = serde_json::from_str::<Notice>(n.payload())
                        && notice.from != me
                    {
                        batch.merge(notice.touched);
                    }
                };
                match first {
                    Ok(Some(n)) => {
                        take(n);
                        let mut more = notes.iter();
                        loop {
                            match more.next() {
                                Ok(Some(n)) => take(n),
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::warn!(database = %shown, error = %describe(&e), "LISTEN connection failed");
                                    broken = true;
                                    break;
                                }
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(database = %shown, error = %describe(&e), "LISTEN connection failed");
                        broken = true;
                    }
                }
            }
            if !batch.is_empty() {
                super::Store::committed(&hooks, &batch);
            }
            if broken || client.is_closed() {
                break;
            }
        }
    }
}

/// SQLite's schema text in PostgreSQL's spelling: integers are 64-bit, rowid keys are identity columns, blobs are
/// `BYTEA`. One home for the schema: the migrations are written once, in `store.rs`.
pub(crate) fn pg_ddl(sql: &str) -> String {
    sql.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace("INTEGER", "BIGINT")
    .replace("BLOB", "BYTEA")
}

/// Apply the migrations not yet applied, all in one transaction under an advisory lock, so coordinators starting
/// together run them once.
fn migrate(client: &mut postgres::Client, migrations: &[&str]) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS rollcage_schema (version BIGINT NOT NULL)")
        .map_err(pg_err)?;
    let version: Option<i64> = tx
        .query_opt("SELECT version FROM rollcage_schema", &[])
        .map_err(pg_err)?
        .map(|r| r.get(0));
    let version = match version {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO rollcage_schema (version) VALUES (0)", &[])
                .map_err(pg_err)?;
            0
        }
    };
    let have = usize::try_from(version).unwrap_or(0);
    if have > migrations.len() {
        return Err(StoreError::Postgres {
            message: format!(
                "the database's schema is version {have}, newer than this coordinator's {}: upgrade the coordinator",
                migrations.len()
            ),
        });
    }
    for sql in migrations.iter().skip(have) {
        tx.batch_execute(&pg_ddl(sql)).map_err(pg_err)?;
    }
    let now = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    tx.execute("UPDATE rollcage_schema SET version = $1", &[&now])
        .map_err(pg_err)?;
    tx.commit().map_err(pg_err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test fixtures")]
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use std::path::Path;

    /// A CA and a server certificate for `localhost` signed by it: (CA PEM, server cert PEM, server key PEM).
    fn ca_and_server() -> (String, String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (ca_cert.pem(), leaf.pem(), key.serialize_pem())
    }

    /// Turn TLS on in `server` with `cert`/`key` (written into its dir, owned by the user the server runs as).
    fn enable_tls(server: &rollcage_testpg::Server, cert: &str, key: &str) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = server.socket_dir();
        let owner = std::fs::metadata(dir.join("data")).unwrap();
        for (name, content) in [("server.crt", cert), ("server.key", key)] {
            let p = dir.join(name);
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&p, Some(owner.uid()), Some(owner.gid())).unwrap();
        }
        let url = server.url();
        let dir: &Path = dir;
        let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                // One statement each: ALTER SYSTEM refuses to run in a (multi-statement) transaction.
                for sql in [
                    format!("ALTER SYSTEM SET ssl_cert_file = '{}'", crt.display()),
                    format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
                    "ALTER SYSTEM SET ssl = 'on'".to_owned(),
                    "SELECT pg_reload_conf()".to_owned(),
                ] {
                    c.batch_execute(&sql).unwrap();
                }
            })
            .join()
            .unwrap();
        });
    }

    #[test]
    fn tls_to_the_database_when_the_url_asks_verified_against_its_ca() {
        let server = rollcage_testpg::Server::start().unwrap();
        let (ca, cert, key) = ca_and_server();
        enable_tls(&server, &cert, &key);
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca).unwrap();
        let base = format!("postgres://postgres@localhost:{}/postgres", server.port());
        let tls_url = format!("{base}?sslmode=require&sslrootcert={}", ca_file.display());
        let store = crate::store::Store::open_postgres(&tls_url).unwrap();
        let on_tls: bool = store
            .read(|c| {
                c.query_row(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    (),
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert!(on_tls, "the connection is not encrypted");
        drop(store);
        // Another CA: refused (the certificate is verified, not merely encrypted against).
        let (other_ca, _, _) = ca_and_server();
        let other = dir.path().join("other.pem");
        std::fs::write(&other, &other_ca).unwrap();
        let bad = format!("{base}?sslmode=require&sslrootcert={}", other.display());
        let e = crate::store::Store::open_postgres(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("localhost"), "{e}");
        // sslrootcert without sslmode: a clear refusal, not a silent plain connection.
        let e = crate::store::Store::open_postgres(&format!(
            "{base}?sslrootcert={}",
            ca_file.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslmode=require"), "{e}");
    }
}
