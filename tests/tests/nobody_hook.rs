//! A `runas: nobody` hook on an agent started the documented way (as root, the enrollment token in a 0600 file given
//! with `--enroll-token-file`, the coordinator's data dir on the same host) tries, as `nobody`, every way to the
//! secrets an adversarial probe once found open: the agent's `/proc/PID/{cmdline,environ,mem,maps}`, its token, its
//! journal, the enrollment token file, a previous deployment's `scripts.log` and revision, the bundle cache, and the
//! coordinator's database, stored bundles and token files. It reports each attempt; nothing secret may be obtained
//! and each read must fail, while the hook still reads its own revision. It also sees the agent's core-dump limit
//! at zero and no loader variable in its environment.

use anyhow::{Context, bail};
use rollcage_e2e::Fleet;
use rollcage_proto::wire::DeploymentStatus;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The probe: runs as `nobody`, sources the paths the test wrote into its revision, and writes one line per attempt
/// (`READ label: content` or `DENIED label`) to `$OUT/probe.txt`.
const PROBE: &str = r#"#!/bin/sh
. ./probe.env
r="$OUT/probe.txt"
t="$OUT/probe.tmp"
: > "$r"
try_read() {
    if cat "$2" > "$t" 2>/dev/null; then
        echo "READ $1: $(tr '\0\n' '  ' < "$t" | head -c 4000)" >> "$r"
    else
        echo "DENIED $1" >> "$r"
    fi
}
try_list() {
    if ls -a "$2" > "$t" 2>/dev/null; then
        echo "READ $1: $(tr '\n' ' ' < "$t")" >> "$r"
    else
        echo "DENIED $1" >> "$r"
    fi
}
echo "UID $(id -u)" >> "$r"
try_read own-revision ./own.txt
try_read cmdline "/proc/$AGENT_PID/cmdline"
try_read environ "/proc/$AGENT_PID/environ"
try_read mem "/proc/$AGENT_PID/mem"
try_read maps "/proc/$AGENT_PID/maps"
echo "CORE $(grep 'Max core file size' "/proc/$AGENT_PID/limits")" >> "$r"
try_list agent-dir "$ROOT/agent"
try_read agent-token "$ROOT/agent/token"
try_list journal "$ROOT/agent/journal"
try_read journal-entry "$JOURNAL_ENTRY"
try_list bundle-cache "$ROOT/agent/bundles"
try_read bundle-file "$BUNDLE_FILE"
try_read enroll-token "$ENROLL_FILE"
try_list previous-deployment "$D1"
try_read previous-scripts-log "$D1/logs/scripts.log"
try_read previous-revision "$D1/revision/secret.txt"
try_list previous-state "$STATE"
try_list coord-data "$COORD"
try_read coord-db "$COORD/rollcage.db"
try_read admin-token "$COORD/admin-token"
try_read metrics-token "$COORD/metrics-token"
try_list coord-bundles "$COORD/bundles"
try_read coord-bundle-file "$COORD_BUNDLE"
echo "ENV $(env | tr '\n' ' ')" >> "$r"
echo "probe done"
"#;

/// The attempts that must fail.
const DENIED: [&str; 19] = [
    "environ",
    "mem",
    "maps",
    "agent-dir",
    "agent-token",
    "journal",
    "journal-entry",
    "bundle-cache",
    "bundle-file",
    "enroll-token",
    "previous-deployment",
    "previous-scripts-log",
    "previous-revision",
    "previous-state",
    "coord-data",
    "coord-db",
    "admin-token",
    "metrics-token",
    "coord-bundles",
];

fn write_exec(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The first file in `dir` (as root).
fn first_file(dir: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .with_context(|| format!("no *{suffix} file in {}", dir.display()))
}

fn read_trim(p: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(p)
        .with_context(|| format!("reading {}", p.display()))?
        .trim()
        .to_owned())
}

#[test]
fn a_nobody_hook_cannot_read_the_agents_or_the_coordinators_secrets() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let result = rollcage_e2e::caught(|| probe(&fleet));
    if result.is_err() {
        let kept = fleet.keep();
        eprintln!("kept {}", kept.display());
    }
    result
}

fn probe(fleet: &Fleet) -> anyhow::Result<()> {
    let base = fleet.dir.path();
    // The temp dir is 0700; opened so that only the protections under test stand between nobody and the files.
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755))?;
    let out = base.join("out");
    std::fs::create_dir(&out)?;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777))?;
    let agent = &fleet.agents[0];
    let root = &agent.root;
    let coord = &fleet.coordinator.data;

    // d1: a root hook prints a secret to its scripts.log; its revision holds another.
    let d1_log_secret = "D1-LOG-SECRET-7f3a";
    let d1_rev_secret = "D1-REV-SECRET-91c2";
    let b1 = base.join("b1");
    std::fs::create_dir_all(b1.join("scripts"))?;
    std::fs::write(
        b1.join("appspec.yml"),
        "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: scripts/a.sh\n",
    )?;
    write_exec(
        &b1.join("scripts/a.sh"),
        &format!("#!/bin/sh\necho {d1_log_secret}\n"),
    )?;
    std::fs::write(b1.join("secret.txt"), format!("{d1_rev_secret}\n"))?;
    fleet.setup("shop", "web", "all", false)?;
    let r1 = fleet.push("shop", &b1)?;
    let (code, d1) = fleet.deploy_wait("shop", "web", &r1)?;
    if code != 0 || d1.status != DeploymentStatus::Succeeded {
        bail!("d1 ended {code} {:?}", d1.status);
    }
    let d1_dir = root.join(format!("app-shop/group-web/deploy-{}", d1.id));
    if read_trim(&d1_dir.join("revision/secret.txt"))? != d1_rev_secret {
        bail!("d1's revision is not where the probe will look");
    }

    // d2: the probe, as nobody, told where everything is.
    let b2 = base.join("b2");
    std::fs::create_dir_all(b2.join("scripts"))?;
    std::fs::write(
        b2.join("appspec.yml"),
        "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: scripts/probe.sh\n      runas: nobody\n      timeout: 60\n",
    )?;
    write_exec(&b2.join("scripts/probe.sh"), PROBE)?;
    std::fs::write(b2.join("own.txt"), "OWN-REVISION-OK\n")?;
    let env = [
        ("AGENT_PID", agent.proc.pid().to_string()),
        ("ROOT", root.display().to_string()),
        ("OUT", out.display().to_string()),
        ("D1", d1_dir.display().to_string()),
        (
            "STATE",
            root.join("app-shop/group-web/state").display().to_string(),
        ),
        (
            "JOURNAL_ENTRY",
            first_file(&root.join("agent/journal"), ".json")?
                .display()
                .to_string(),
        ),
        (
            "BUNDLE_FILE",
            first_file(&root.join("agent/bundles"), "")?
                .display()
                .to_string(),
        ),
        (
            "ENROLL_FILE",
            fleet.coordinator.enroll_token_file().display().to_string(),
        ),
        ("COORD", coord.display().to_string()),
        (
            "COORD_BUNDLE",
            first_file(&coord.join("bundles"), "")?
                .display()
                .to_string(),
        ),
    ];
    let env_text: String = env.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
    std::fs::write(b2.join("probe.env"), env_text)?;
    let r2 = fleet.push("shop", &b2)?;
    let (code, d2) = fleet.deploy_wait("shop", "web", &r2)?;
    let report = std::fs::read_to_string(out.join("probe.txt")).unwrap_or_default();
    if code != 0 || d2.status != DeploymentStatus::Succeeded {
        bail!("d2 ended {code} {:?}; probe report:\n{report}", d2.status);
    }
    let (_, logs) = fleet.cli(&["logs", &d2.id])?;
    eprintln!("probe report:\n{report}");

    let line = |label: &str| {
        report
            .lines()
            .find(|l| {
                l.strip_prefix("READ ")
                    .or_else(|| l.strip_prefix("DENIED "))
                    .is_some_and(|rest| rest == label || rest.starts_with(&format!("{label}:")))
            })
            .unwrap_or("")
    };
    assert!(report.contains("UID 65534"), "not run as nobody:\n{report}");
    assert!(logs.contains("probe done"), "{logs}");
    // Its own revision stays readable.
    assert_eq!(line("own-revision"), "READ own-revision: OWN-REVISION-OK ");
    // argv is world-readable by design: it must hold no secret, only the file's path.
    assert!(line("cmdline").starts_with("READ cmdline:"), "{report}");
    assert!(line("cmdline").contains("--enroll-token-file"), "{report}");
    for label in DENIED {
        assert_eq!(line(label), format!("DENIED {label}"), "{report}");
    }
    // The stored bundle's file name is its sha256: an unreadable dir is what keeps it closed.
    assert_eq!(line("coord-bundle-file"), "DENIED coord-bundle-file");
    // Core dumps are off in the agent (soft and hard).
    let core = report
        .lines()
        .find_map(|l| l.strip_prefix("CORE "))
        .unwrap_or_default();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        fields.get(4..6),
        Some(&["0", "0"][..]),
        "core limit: {core}"
    );
    // No loader variable reached the hook.
    let env_line = report
        .lines()
        .find_map(|l| l.strip_prefix("ENV "))
        .unwrap_or_default();
    assert!(
        !env_line.split_whitespace().any(|kv| kv.starts_with("LD_")),
        "{env_line}"
    );

    // Nothing secret anywhere in what the hook saw or printed.
    let agent_token = read_trim(&root.join("agent/token"))?;
    let secrets = [
        (
            "the enrollment token",
            fleet.coordinator.enroll_token.clone(),
        ),
        ("the admin token", fleet.coordinator.admin_token.clone()),
        ("the agent's token", agent_token),
        (
            "the metrics token",
            read_trim(&coord.join("metrics-token"))?,
        ),
        ("d1's log", d1_log_secret.to_owned()),
        ("d1's revision", d1_rev_secret.to_owned()),
    ];
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} too short to search for");
        assert!(
            !report.contains(secret.as_str()),
            "{what} leaked:\n{report}"
        );
        assert!(!logs.contains(secret.as_str()), "{what} in d2's logs");
    }
    // The runas user's way into its deployment dir was closed after the hook.
    let d2_dir = root.join(format!("app-shop/group-web/deploy-{}", d2.id));
    let acl = std::process::Command::new("getfacl")
        .args(["-n", "-p"])
        .arg(&d2_dir)
        .output()?;
    let acl = String::from_utf8_lossy(&acl.stdout);
    assert!(!acl.contains("user:65534"), "{acl}");
    Ok(())
}
