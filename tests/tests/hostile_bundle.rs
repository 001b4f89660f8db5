//! A hostile bundle deployed to a real agent (issue 12): a 0.1 MB tar.gz whose first member is a 64 MiB GNU long
//! name, one whose symlink has a 64 MiB GNU long link target, then one 5,000 directories deep. Each deployment ends
//! `failed` within 5 s of its DownloadBundle starting, with a short message naming the limit; the agent's peak RSS
//! stays under 64 MiB; and the group's next deployment of a good bundle succeeds.

use anyhow::Context;
use rollcage_e2e::{Fleet, write_bundle};
use rollcage_proto::wire::{Deployment, DeploymentStatus, StepState};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The bound on the agent's memory for any hostile archive.
const MAX_RSS_KIB: u64 = 64 * 1024;

fn header(name: &[u8], ty: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

/// A tar.gz whose first member is a GNU long name of 64 MiB (`a`s), describing an `appspec.yml`.
fn long_name_bundle(path: &Path) -> anyhow::Result<()> {
    long_extension_bundle(path, tar::EntryType::GNULongName)
}

/// A tar.gz whose first member is a GNU long link target of 64 MiB (`a`s), for the `appspec.yml` entry after it.
fn long_link_bundle(path: &Path) -> anyhow::Result<()> {
    long_extension_bundle(path, tar::EntryType::GNULongLink)
}

/// A tar.gz whose first member is a 64 MiB GNU extension entry of type `ty` (`a`s), then an `appspec.yml`.
fn long_extension_bundle(path: &Path, ty: tar::EntryType) -> anyhow::Result<()> {
    let len: u64 = 64 << 20;
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::default());
    gz.write_all(header(b"././@LongLink", ty, len + 1).as_bytes())?;
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&chunk)?;
    }
    // The NUL terminator, padded to the block.
    gz.write_all(&[0; 512])?;
    let spec = b"version: 0.0\nos: linux\n";
    gz.write_all(header(b"appspec.yml", tar::EntryType::Regular, spec.len() as u64).as_bytes())?;
    gz.write_all(spec)?;
    gz.write_all(&vec![0; 512 - spec.len()])?;
    gz.write_all(&[0; 1024])?;
    gz.finish()?;
    Ok(())
}

/// A tar.gz of directories `d/`, `d/d/`, … 5,000 deep.
fn deep_bundle(path: &Path) -> anyhow::Result<()> {
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut name = String::new();
    for _ in 0..5000 {
        name.push_str("d/");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &name, std::io::empty())?;
    }
    b.into_inner()?.finish()?;
    Ok(())
}

/// The peak resident set of process `pid` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/PID/status")?;
    line.split_whitespace()
        .nth(1)
        .context("VmHWM has no value")?
        .parse()
        .context("VmHWM is not a number")
}

/// Deploy the bundle at `path`; it must end `failed` within `within`, with a short DownloadBundle message
/// containing `expected`.
fn deploy_hostile(
    fleet: &Fleet,
    path: &Path,
    expected: &str,
    within: Duration,
) -> anyhow::Result<Deployment> {
    let size = std::fs::metadata(path)?.len();
    assert!(size < 1 << 20, "the bundle itself is small: {size} bytes");
    let revision = fleet.push("shop", path)?;
    let start = Instant::now();
    let id = fleet.deploy("shop", "web", &revision)?;
    let d = fleet.wait_end(&id, within)?;
    eprintln!(
        "{} ended {:?} in {:?}",
        path.display(),
        d.status,
        start.elapsed()
    );
    assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
    assert!(d.message.len() < 4096, "{} bytes", d.message.len());
    let step = d
        .instances
        .iter()
        .flat_map(|i| &i.steps)
        .find(|s| s.state == StepState::Failed)
        .context("no failed step")?;
    assert_eq!(step.event.name(), "DownloadBundle");
    assert!(step.message.len() < 4096, "{} bytes", step.message.len());
    // The bound on handling any hostile archive, from the step's dispatch to its report.
    let took = step
        .ended_at_ms
        .zip(step.started_at_ms)
        .map(|(end, start)| end - start)
        .context("the failed step has no start or end time")?;
    assert!(took < 5_000, "DownloadBundle took {took} ms");
    assert!(
        step.message.contains(expected),
        "step message: {}",
        step.message
    );
    Ok(d)
}

#[test]
fn a_hostile_bundle_fails_its_deployment_quickly_and_the_next_one_succeeds() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let result = (|| {
        fleet.setup("shop", "web", "all", false)?;
        let pid = fleet.agents[0].proc.pid();

        let long = fleet.dir.path().join("longname.tar.gz");
        long_name_bundle(&long)?;
        deploy_hostile(&fleet, &long, "at most 4096 bytes", Duration::from_secs(60))?;
        let rss = peak_rss_kib(pid)?;
        eprintln!("agent peak RSS after the long name: {rss} KiB");
        assert!(rss < MAX_RSS_KIB, "agent peak RSS {rss} KiB");

        let link = fleet.dir.path().join("longlink.tar.gz");
        long_link_bundle(&link)?;
        deploy_hostile(&fleet, &link, "at most 4096 bytes", Duration::from_secs(60))?;
        let rss = peak_rss_kib(pid)?;
        eprintln!("agent peak RSS after the long link: {rss} KiB");
        assert!(rss < MAX_RSS_KIB, "agent peak RSS {rss} KiB");

        let deep = fleet.dir.path().join("deep.tar.gz");
        deep_bundle(&deep)?;
        deploy_hostile(&fleet, &deep, "at most 256 levels", Duration::from_secs(60))?;
        let rss = peak_rss_kib(pid)?;
        eprintln!("agent peak RSS after the deep tree: {rss} KiB");
        assert!(rss < MAX_RSS_KIB, "agent peak RSS {rss} KiB");

        let good = fleet.dir.path().join("good");
        write_bundle(&good, "good", "0", "")?;
        let revision = fleet.push("shop", &good)?;
        let (code, d) = fleet.deploy_wait("shop", "web", &revision)?;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        assert_eq!(code, 0);
        Ok(())
    })();
    if result.is_err() {
        eprintln!("fleet kept at {}", fleet.keep().display());
    }
    result
}
