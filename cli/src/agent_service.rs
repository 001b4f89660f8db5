//! Running the agent as a service: the TOML config file that `rollcage agent --config FILE` reads, and
//! `rollcage agent install`, which writes that file, the enrollment token (0600) and a systemd unit.
//!
//! Rendering (unit text, config text) is pure; [`install`] does the I/O: each file is staged in a temp file in its
//! directory and renamed into place, so a crash never leaves half a unit or config behind. No `systemctl` call
//! is made unless `--enable`.

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Name of the systemd unit `agent install` writes.
pub const UNIT_NAME: &str = "rollcage-agent.service";
/// Name of the config file in the config dir.
pub const CONFIG_NAME: &str = "agent.toml";
/// Name of the enrollment token file in the config dir.
pub const ENROLL_TOKEN_NAME: &str = "enroll-token";

/// How long systemd waits after SIGTERM before SIGKILL. The agent finishes the step in progress before it exits
/// (hooks have their own AppSpec timeouts, up to an hour), so this is generous; a step cut short is offered again
/// by the coordinator and the agent's journal decides whether it already ran.
const STOP_TIMEOUT_SECS: u32 = 300;

/// The coordinators of an agent's config file: `coordinator = "https://a:7700"` or a list, `coordinator =
/// ["https://a:7700", "https://b:7700"]`, tried in that order. Each URL is checked when the file is read (through
/// the client's [`rollcage_client::parse_bases`], so a string may also be a comma-separated list); one URL is
/// written back as a string, several as a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "OneOrMany", into = "OneOrMany")]
pub struct Coordinators(Vec<String>);

/// How [`Coordinators`] are spelled in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Coordinators {
    /// A `--coordinator` value: one URL or several separated by commas.
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        Ok(Self(rollcage_client::parse_bases(value)?))
    }

    /// The base URLs, in order.
    pub fn urls(&self) -> &[String] {
        &self.0
    }
}

impl TryFrom<OneOrMany> for Coordinators {
    type Error = rollcage_client::ClientError;

    fn try_from(v: OneOrMany) -> Result<Self, Self::Error> {
        let values = match v {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(list) => list,
        };
        let mut urls = Vec::new();
        for v in &values {
            urls.extend(rollcage_client::parse_bases(v)?);
        }
        if urls.is_empty() {
            return Err(rollcage_client::ClientError::Config(
                "an empty list: expected at least one coordinator URL".into(),
            ));
        }
        Ok(Self(urls))
    }
}

impl From<Coordinators> for OneOrMany {
    fn from(c: Coordinators) -> Self {
        match <[String; 1]>::try_from(c.0) {
            Ok([one]) => Self::One(one),
            Err(many) => Self::Many(many),
        }
    }
}

/// The agent's config file (`rollcage agent --config FILE`). Flags given on the command line override it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// Coordinator base URL, or a list of them.
    pub coordinator: Coordinators,
    /// Instance name.
    pub name: String,
    /// Root directory of this agent's deployments.
    pub root: PathBuf,
    /// File holding the enrollment token (read at start; only needed until the agent has its own token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll_token_file: Option<PathBuf>,
    /// Where the agent keeps its own token (default ROOT/agent/token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The address the application serves on (ROLLCAGE_SERVICE_ADDR for hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_addr: Option<String>,
    /// Extra CA certificate (PEM) to trust for a TLS coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the coordinator's own CA, by the fingerprint it printed at start (`SHA256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<rollcage_client::CaFingerprint>,
    /// Variables given to every hook.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The instance's tags (`--tag`), sent at enrollment and on every start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Most bytes of one step's hook output sent to the coordinator (default 256 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<usize>,
    /// At most this many bytes of revision archives in the agent's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cache_bytes: Option<u64>,
    /// OpenSSH allowed_signers file: deploy only revisions signed by a key it lists for `rollcage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_signers: Option<PathBuf>,
}

impl AgentFile {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading agent config {}", path.display()))?;
        let file: Self = toml::from_str(&text)
            .with_context(|| format!("invalid agent config {}", path.display()))?;
        for k in file.vars.keys() {
            if let Err(e) = rollcage_proto::hookvar::check_var_name(k) {
                bail!("invalid agent config {}: vars.{k}: {e}", path.display());
            }
        }
        if let Err(e) = rollcage_proto::tags::check_tags(&file.tags) {
            bail!("invalid agent config {}: tags: {e}", path.display());
        }
        Ok(file)
    }
}

/// `rollcage agent install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Coordinator base URL, or several separated by commas (tried in order; the agent stays on the one that
    /// answers).
    #[arg(long)]
    coordinator: String,
    /// Instance name.
    #[arg(long)]
    name: String,
    /// File holding the enrollment token (a copy of the coordinator's DATA/enroll-token, mode 0600); copied to
    /// the config dir, mode 0600.
    #[arg(long, alias = "token-file")]
    enroll_token_file: Option<PathBuf>,
    /// Refused: a token on the command line is readable by every local user (`--enroll-token-file` replaces it).
    #[arg(long = "enroll-token", hide = true)]
    enroll_token_on_command_line: Option<std::ffi::OsString>,
    /// Root directory of the agent's deployments.
    #[arg(long, default_value = "/var/lib/rollcage")]
    root: PathBuf,
    /// KEY=VALUE given to every hook (repeatable).
    #[arg(long = "var", value_parser = crate::fleet::parse_var)]
    vars: Vec<(String, String)>,
    /// KEY=VALUE tag of this instance (repeatable), written to the config's `tags`.
    #[arg(long = "tag", value_parser = crate::fleet::parse_tag)]
    tags: Vec<(String, String)>,
    /// The address the application serves on (ROLLCAGE_SERVICE_ADDR for hooks).
    #[arg(long)]
    service_addr: Option<String>,
    /// Extra CA certificate (PEM) to trust for a TLS coordinator.
    #[arg(long, conflicts_with = "ca_fingerprint")]
    ca_file: Option<PathBuf>,
    /// Trust exactly the coordinator's own CA, by the fingerprint it printed at start (SHA256:…, also in its
    /// DATA/tls/ca.fingerprint).
    #[arg(long)]
    ca_fingerprint: Option<rollcage_client::CaFingerprint>,
    /// OpenSSH allowed_signers file: the agent deploys only revisions signed by a key it lists with
    /// `namespaces="rollcage"` (checked now; the config refers to it by absolute path).
    #[arg(long)]
    trusted_signers: Option<PathBuf>,
    /// Where the systemd unit goes.
    #[arg(long, default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
    /// Where the config file and the enrollment token go.
    #[arg(long, default_value = "/etc/rollcage")]
    config_dir: PathBuf,
    /// The `rollcage` binary the unit runs (default: this one).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Then run `systemctl daemon-reload` and `systemctl enable --now` the unit.
    #[arg(long)]
    enable: bool,
}

/// Paths go into the unit's `ExecStart=` line unquoted: refuse anything systemd would split or expand
/// (whitespace, quotes, `%` specifiers, `$` variables, `\` escapes) rather than escape it.
fn unit_safe(what: &str, p: &Path) -> anyhow::Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{what} {} is not UTF-8", p.display()))?;
    let ok = p.is_absolute()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | ':')
        });
    if !ok {
        bail!(
            "{what} `{s}` cannot go into a systemd unit: expected an absolute path of letters, digits and `/._-+@:`"
        );
    }
    Ok(s.to_owned())
}

/// The systemd unit text.
pub fn render_unit(binary: &str, config: &str, name: &str) -> String {
    let refused = rollcage_agent::EXIT_REFUSED;
    format!(
        "# Written by `rollcage agent install`.
[Unit]
Description=rollcage agent ({name})
Documentation=https://example.invalid/rollcage
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={binary} agent --config {config}
Environment=ROLLCAGE_LOG=info
Restart=on-failure
RestartSec=5
# The agent exits {refused} when only an operator can help (its token was refused: the instance was removed or
# re-enrolled); restarting it would only repeat the refusal.
RestartPreventExitStatus={refused}
# KillMode=process: on stop or restart systemd signals the agent alone. The application daemons that hooks start
# (ApplicationStart) live in this unit's cgroup; the default KillMode=control-group would kill them with every
# agent restart or upgrade and take the deployed application down. Stopping them is ApplicationStop's job.
KillMode=process
# The agent finishes the step in progress before exiting (SIGTERM); a step cut short is offered again on restart.
TimeoutStopSec={STOP_TIMEOUT_SECS}

[Install]
WantedBy=multi-user.target
"
    )
}

/// `rollcage agent`: run the agent until SIGTERM. Its error says what happened; the exit code is
/// [`rollcage_agent::EXIT_REFUSED`] when only an operator can help (the unit does not restart it), else 1.
pub async fn run(cfg: rollcage_agent::AgentConfig) -> ExitCode {
    match rollcage_agent::run(cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A daemon: its last word goes where its logs go (journald, a collector in JSON).
            tracing::error!(exit_code = e.exit_code(), "agent stopped: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Write `dir/name` with `mode`, atomically (the mode is set before any content is written).
fn write_file(dir: &Path, name: &str, content: &str, mode: u32) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    rollcage_secretfile::write_atomic(&path, content.as_bytes(), mode)?;
    Ok(path)
}

/// What `install` wrote.
#[derive(Debug)]
pub struct Installed {
    /// The unit file.
    pub unit: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The enrollment token file.
    pub enroll_token: PathBuf,
}

/// Write the config, the enrollment token and the unit (no `systemctl`).
pub fn install_files(a: &InstallArgs) -> anyhow::Result<Installed> {
    if !rollcage_proto::wire::is_valid_name(&a.name) {
        bail!(
            "invalid --name `{}`: expected {}",
            a.name,
            rollcage_proto::wire::NAME_RULE
        );
    }
    if a.enroll_token_on_command_line.is_some() {
        bail!(crate::fleet::refused_secret_flag(
            "--enroll-token",
            "put the token in a file (mode 0600) and pass --enroll-token-file FILE"
        ));
    }
    let token = match &a.enroll_token_file {
        Some(f) => crate::secret::read_token_file(f, "enrollment token file")?,
        None => {
            bail!("pass --enroll-token-file FILE (the coordinator's DATA/enroll-token, mode 0600)")
        }
    };
    let binary = match &a.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locating the rollcage binary")?,
    };
    let config_dir = std::path::absolute(&a.config_dir)
        .with_context(|| format!("resolving {}", a.config_dir.display()))?;
    let root =
        std::path::absolute(&a.root).with_context(|| format!("resolving {}", a.root.display()))?;
    let trusted_signers = match &a.trusted_signers {
        Some(p) => {
            let p = std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?;
            rollcage_signing::AllowedSigners::load(&p)?;
            Some(p)
        }
        None => None,
    };
    let config_path = config_dir.join(CONFIG_NAME);
    let binary_s = unit_safe("binary", &binary)?;
    let config_s = unit_safe("config path", &config_path)?;
    for dir in [&config_dir, &a.unit_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = AgentFile {
        coordinator: Coordinators::parse(&a.coordinator).context("--coordinator")?,
        name: a.name.clone(),
        root,
        enroll_token_file: Some(config_dir.join(ENROLL_TOKEN_NAME)),
        token_file: None,
        service_addr: a.service_addr.clone(),
        ca_file: a.ca_file.clone(),
        ca_fingerprint: a.ca_fingerprint,
        vars: a.vars.iter().cloned().collect(),
        tags: a.tags.iter().cloned().collect(),
        max_log_bytes: None,
        max_cache_bytes: None,
        trusted_signers,
    };
    let config_text = format!(
        "# rollcage agent config, read by `rollcage agent --config {}`.\n{}",
        config_path.display(),
        toml::to_string(&file).context("serializing the agent config")?
    );
    // The token first: the config and the unit that refer to it only appear once it is in place.
    let enroll_token = write_file(&config_dir, ENROLL_TOKEN_NAME, &format!("{token}\n"), 0o600)?;
    let config = write_file(&config_dir, CONFIG_NAME, &config_text, 0o644)?;
    let unit = write_file(
        &a.unit_dir,
        UNIT_NAME,
        &render_unit(&binary_s, &config_s, &a.name),
        0o644,
    )?;
    Ok(Installed {
        unit,
        config,
        enroll_token,
    })
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !status.success() {
        bail!("systemctl {} failed: {status}", args.join(" "));
    }
    Ok(())
}

/// `rollcage agent install`.
pub fn install(a: &InstallArgs) -> anyhow::Result<ExitCode> {
    let done = install_files(a)?;
    println!("wrote {}", done.enroll_token.display());
    println!("wrote {}", done.config.display());
    println!("wrote {}", done.unit.display());
    if a.enable {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", UNIT_NAME])?;
        println!("enabled and started {UNIT_NAME}");
    } else {
        println!("start it with: systemctl daemon-reload && systemctl enable --now {UNIT_NAME}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn args(dir: &Path) -> InstallArgs {
        InstallArgs {
            coordinator: "https://coord.example:7700".into(),
            name: "web-1".into(),
            enroll_token_file: Some(dir.join("given-token")),
            enroll_token_on_command_line: None,
            root: dir.join("root"),
            vars: vec![("REGION".into(), "eu-west".into())],
            tags: vec![("env".into(), "prod".into())],
            service_addr: Some("127.0.0.1:8080".into()),
            ca_file: None,
            ca_fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
                .parse()
                .ok(),
            trusted_signers: None,
            unit_dir: dir.join("units"),
            config_dir: dir.join("etc"),
            binary: Some("/usr/local/bin/rollcage".into()),
            enable: false,
        }
    }

    fn mode(p: &Path) -> std::io::Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    }

    #[test]
    fn install_writes_unit_config_and_token_that_load_back() -> TestResult {
        let dir = tempfile::tempdir()?;
        rollcage_secretfile::write_secret(&dir.path().join("given-token"), b"enroll-secret\n")?;
        let done = install_files(&args(dir.path()))?;
        assert_eq!(done.unit, dir.path().join("units").join(UNIT_NAME));
        assert_eq!(mode(&done.enroll_token)?, 0o600);
        assert_eq!(
            std::fs::read_to_string(&done.enroll_token)?,
            "enroll-secret\n"
        );
        assert_eq!(mode(&done.config)?, 0o644);
        assert!(!std::fs::read_to_string(&done.config)?.contains("enroll-secret"));

        let unit = std::fs::read_to_string(&done.unit)?;
        let config = done.config.to_str().ok_or("utf-8")?;
        for line in [
            "Type=simple".to_owned(),
            "Restart=on-failure".to_owned(),
            format!("RestartPreventExitStatus={}", rollcage_agent::EXIT_REFUSED),
            "KillMode=process".to_owned(),
            format!("TimeoutStopSec={STOP_TIMEOUT_SECS}"),
            format!("ExecStart=/usr/local/bin/rollcage agent --config {config}"),
            "WantedBy=multi-user.target".to_owned(),
        ] {
            assert!(
                unit.lines().any(|l| l == line),
                "missing `{line}` in\n{unit}"
            );
        }

        let file = AgentFile::load(&done.config)?;
        assert_eq!(file.coordinator.urls(), ["https://coord.example:7700"]);
        assert!(
            std::fs::read_to_string(&done.config)?
                .contains("\ncoordinator = \"https://coord.example:7700\"\n"),
            "one URL is written as a string"
        );
        assert_eq!(file.name, "web-1");
        assert_eq!(file.root, dir.path().join("root"));
        assert_eq!(file.service_addr.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(file.vars.get("REGION").map(String::as_str), Some("eu-west"));
        assert_eq!(
            file.ca_fingerprint.map(|f| f.to_string()).as_deref(),
            Some("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"),
            "the pin reaches the config file"
        );
        let token_file = file
            .enroll_token_file
            .clone()
            .ok_or("no enroll_token_file")?;
        assert_eq!(
            crate::secret::read_enroll_token(&token_file)?.as_deref(),
            Some("enroll-secret")
        );
        // Once the token file is gone (agent enrolled), loading still works.
        std::fs::remove_file(&done.enroll_token)?;
        assert_eq!(crate::secret::read_enroll_token(&token_file)?, None);
        Ok(())
    }

    #[test]
    fn install_reads_the_token_from_a_file_and_reinstall_replaces_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        let tf = dir.path().join("given-token");
        rollcage_secretfile::write_secret(&tf, b"first\n")?;
        let mut a = args(dir.path());
        install_files(&a)?;
        rollcage_secretfile::write_secret(&tf, b"from-file\n")?;
        let done = install_files(&a)?;
        assert_eq!(std::fs::read_to_string(&done.enroll_token)?, "from-file\n");
        assert_eq!(mode(&done.enroll_token)?, 0o600);
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("etc"))?.count(), 2);
        // A token given on the command line is refused, and so is a token file others can read.
        a.enroll_token_on_command_line = Some("secret".into());
        let e = install_files(&a).err().ok_or("--enroll-token accepted")?;
        assert!(e.to_string().contains("--enroll-token-file"), "{e}");
        assert!(!e.to_string().contains("secret\""), "{e}");
        a.enroll_token_on_command_line = None;
        std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o644))?;
        let e = install_files(&a)
            .err()
            .ok_or("a 0644 token file accepted")?;
        assert!(e.to_string().contains("mode 0644"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path().join("units"))?.count(), 1);
        Ok(())
    }

    #[test]
    fn install_checks_the_trusted_signers_file_and_the_config_names_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        rollcage_secretfile::write_secret(&dir.path().join("given-token"), b"enroll-secret\n")?;
        let signers = dir.path().join("allowed_signers");
        std::fs::write(&signers, "ops cert-authority ssh-ed25519 AAAA\n")?;
        let mut a = args(dir.path());
        a.trusted_signers = Some(signers.clone());
        let err = install_files(&a)
            .err()
            .ok_or("a cert-authority line accepted")?;
        assert!(format!("{err:#}").contains("allowed_signers:1"), "{err:#}");
        assert!(!dir.path().join("units").exists());
        std::fs::write(
            &signers,
            "ops namespaces=\"rollcage\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwlyjLcP7pU7DcL+7OkYE8CwTsgrtKrmsJv5eXnQka/\n",
        )?;
        let done = install_files(&a)?;
        assert_eq!(
            AgentFile::load(&done.config)?.trusted_signers,
            Some(signers)
        );
        Ok(())
    }

    #[test]
    fn unsafe_paths_and_names_are_refused_before_writing() -> TestResult {
        let dir = tempfile::tempdir()?;
        rollcage_secretfile::write_secret(&dir.path().join("given-token"), b"enroll-secret\n")?;
        let mut a = args(dir.path());
        a.binary = Some("/opt/my tools/rollcage".into());
        let err = install_files(&a)
            .err()
            .ok_or("space in binary path accepted")?;
        assert!(
            err.to_string().contains("cannot go into a systemd unit"),
            "{err}"
        );
        let mut a = args(dir.path());
        a.name = "web 1\nExecStart=/bin/evil".into();
        let err = install_files(&a).err().ok_or("bad name accepted")?;
        assert!(err.to_string().contains("invalid --name"), "{err}");
        assert!(!dir.path().join("units").exists());
        Ok(())
    }

    #[test]
    fn several_coordinators_are_a_list_in_the_config_and_one_stays_a_string() -> TestResult {
        let dir = tempfile::tempdir()?;
        rollcage_secretfile::write_secret(&dir.path().join("given-token"), b"enroll-secret\n")?;
        let mut a = args(dir.path());
        a.coordinator = "https://a.example:7700, https://b.example:7700/".into();
        let done = install_files(&a)?;
        let text = std::fs::read_to_string(&done.config)?;
        assert!(
            text.contains("coordinator = [\"https://a.example:7700\", \"https://b.example:7700\"]"),
            "{text}"
        );
        let file = AgentFile::load(&done.config)?;
        assert_eq!(
            file.coordinator.urls(),
            ["https://a.example:7700", "https://b.example:7700"]
        );

        let p = dir.path().join("a.toml");
        let load = |coordinator: &str| {
            std::fs::write(
                &p,
                format!("coordinator = {coordinator}\nname = \"n\"\nroot = \"/r\"\n"),
            )?;
            AgentFile::load(&p)
        };
        assert_eq!(
            load(r#""http://a:1,http://b:2""#)?.coordinator.urls(),
            ["http://a:1", "http://b:2"]
        );
        assert_eq!(
            load(r#"["http://a:1"]"#)?.coordinator.urls(),
            ["http://a:1"]
        );
        for bad in [r#"[]"#, r#"["http://a:1", "b:2"]"#, r#""http://a:1,""#, "1"] {
            let err = load(bad).err().ok_or(format!("{bad} accepted"))?;
            assert!(
                format!("{err:#}").contains("invalid agent config"),
                "{err:#}"
            );
        }
        let err = load(r#"["http://a:1", "b:2"]"#)
            .err()
            .ok_or("b:2 accepted")?;
        assert!(format!("{err:#}").contains("`b:2`"), "{err:#}");

        a.coordinator = "https://a.example:7700,ftp://b".into();
        let err = install_files(&a).err().ok_or("ftp accepted")?;
        assert!(format!("{err:#}").contains("--coordinator"), "{err:#}");
        Ok(())
    }

    #[test]
    fn config_rejects_unknown_keys_and_bad_var_names() -> TestResult {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("a.toml");
        std::fs::write(
            &p,
            "coordinator = \"http://x\"\nname = \"n\"\nroot = \"/r\"\nrot = 1\n",
        )?;
        let err = AgentFile::load(&p).err().ok_or("unknown key accepted")?;
        assert!(format!("{err:#}").contains("rot"), "{err:#}");
        std::fs::write(
            &p,
            "coordinator = \"http://x\"\nname = \"n\"\nroot = \"/r\"\n[vars]\n1BAD = \"v\"\n",
        )?;
        let err = AgentFile::load(&p).err().ok_or("bad var accepted")?;
        assert!(err.to_string().contains("vars.1BAD"), "{err}");
        std::fs::write(
            &p,
            "coordinator = \"http://x\"\nname = \"n\"\nroot = \"/r\"\n[vars]\nLD_PRELOAD = \"/tmp/x.so\"\n",
        )?;
        let err = AgentFile::load(&p).err().ok_or("LD_PRELOAD accepted")?;
        assert!(
            err.to_string().contains("vars.LD_PRELOAD") && err.to_string().contains("loaded"),
            "{err}"
        );
        Ok(())
    }
}
