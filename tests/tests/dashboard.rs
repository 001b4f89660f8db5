//! The web dashboard in a real browser: Debian's headless Chromium, driven over WebDriver (`chromedriver`),
//! against a real coordinator and two real agents. The page is opened with the admin token in the URL fragment,
//! navigates to a running deployment, sees a cell of the instances × events grid turn `running` and later
//! `succeeded`, and shows that cell's log (text the hook printed) when clicked. A screenshot taken while the
//! deployment runs is written to `<target dir>/dashboard-screenshot.png` for people to look at.
//! Bakes (issue 16): an `in-place-lb` group's `[analysis]` and a `blue-green` group's `[canary]`, through the
//! built-in LB with the demo app, show one verdict table per bake, row for row what the API has.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/setup.sh`); without them the test fails, it does not skip.

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use rollcage_e2e::lb::{
    BuiltinLb, DemoApps, Faults, LbGroup, Load, create_lb_group_with, write_app_bundle_with_faults,
};
use rollcage_e2e::{Fleet, Proc, rollcage_bin, write_bundle};
use rollcage_proto::wire::DeploymentStatus;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long the page may take to show a change the coordinator already has (the page polls every second, or
/// streams; the generous margin is for a loaded CI machine).
const SEE_WITHIN: Duration = Duration::from_secs(60);

/// A chromedriver process and a browser session on it; the session is closed (and Chromium quit) by
/// [`Browser::close`], the driver killed when dropped.
struct Browser {
    client: Client,
    _driver: Proc,
}

impl Browser {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).is_file() {
                bail!(
                    "{bin} not found: the dashboard test needs Debian's `chromium` and `chromium-driver` packages \
                     (scripts/setup.sh installs them)"
                );
            }
        }
        // chromedriver cannot report a port it picked itself: pick a free one below the ephemeral range, where
        // the tests' client sockets cannot take it before chromedriver binds it.
        let port = rollcage_lb::port::free_listen_port(std::net::Ipv4Addr::LOCALHOST.into())?;
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1");
        let driver = Proc::spawn(cmd, &dir.join("chromedriver.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "chromedriver did not listen on {port} within 20 s; see {}",
                    driver.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--no-first-run",
                    "--window-size=1400,1050",
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .with_context(|| {
                format!(
                    "starting a Chromium session through chromedriver; its log ({}):\n{}",
                    driver.log.display(),
                    std::fs::read_to_string(&driver.log).unwrap_or_default()
                )
            })?;
        Ok(Self {
            client,
            _driver: driver,
        })
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }

    /// An attribute of the first element matching `css`, or None if there is no such element (yet).
    async fn attr(&self, css: &str, name: &str) -> anyhow::Result<Option<String>> {
        // One script, so that a grid rebuilt between a find and a read cannot leave a stale element.
        let v = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
                vec![css.into(), name.into()],
            )
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// The text content of the first element matching `css` (hidden or not), or "" if there is none.
    async fn text(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                vec![css.into()],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Wait until `css`'s attribute `name` is `want`; fails with the last value seen.
    async fn wait_attr(&self, css: &str, name: &str, want: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < SEE_WITHIN {
            last = self.attr(css, name).await?;
            if last.as_deref() == Some(want) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "`{css}` {name}: wanted `{want}` within {SEE_WITHIN:?}, last saw {last:?}; page error: `{}`",
            self.text("#error").await.unwrap_or_default()
        )
    }

    /// Wait until the text of `css` contains `needle`; fails with the last text seen.
    async fn wait_text(&self, css: &str, needle: &str) -> anyhow::Result<String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < SEE_WITHIN {
            last = self.text(css).await?;
            if last.contains(needle) {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("`{css}` never contained `{needle}` within {SEE_WITHIN:?}; last text: `{last}`")
    }
}

/// `CARGO_TARGET_DIR` if set, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn cell(instance: &str, event: &str) -> String {
    format!("button.cell[data-instance=\"{instance}\"][data-event=\"{event}\"]")
}

async fn drive(fleet: &Fleet, browser: &Browser) -> anyhow::Result<()> {
    let c = &browser.client;
    let base = fleet.coordinator.url();
    let token = &fleet.coordinator.admin_token;

    // Concurrency 1: i1 waits while i0 deploys. AfterInstall holds until the test opens a gate (at most 60 s), so
    // the page is sure to see it running however slow the browser is to start.
    fleet.setup("shop", "web", "1", false)?;
    let gate = PathBuf::from(format!("{}.gate", fleet.markers.display()));
    let bundle = fleet.dir.path().join("v1");
    write_bundle(
        &bundle,
        "v1",
        "0.05",
        "echo \"dashboard-log $ROLLCAGE_INSTANCE $LIFECYCLE_EVENT <b>not html</b>\"\n\
         if [ \"$LIFECYCLE_EVENT\" = AfterInstall ]; then\n\
           n=0; while [ ! -e \"$MARKERS.gate\" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done\n\
         fi",
    )?;
    let rev = fleet.push("shop", &bundle)?;

    // Sign in through the URL fragment; the page must take the token out of the address bar.
    c.goto(&format!("{base}/#token={token}")).await?;
    browser
        .wait_text("#view", "shop")
        .await
        .context("the home page lists the application")?;
    let url = c.current_url().await?;
    assert!(
        !url.as_str().contains(token.as_str()),
        "the token stayed in the address bar: {url}"
    );

    let id = fleet.deploy("shop", "web", &rev)?;
    // The home page, loaded before the deployment existed, re-reads its lists: the new deployment shows up
    // without a reload; follow its link.
    let link = format!("a[href=\"#deployment={id}\"]");
    let start = Instant::now();
    let link = loop {
        match c.find(Locator::Css(&link)).await {
            Ok(e) => break e,
            Err(e) if e.is_no_such_element() && start.elapsed() < SEE_WITHIN => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "no link to {id} on the home page: `{}`",
                    browser.text("#view").await.unwrap_or_default()
                )));
            }
        }
    };
    link.click().await?;

    // A cell turns running, live; the screenshot shows the deployment in flight.
    let target = cell("i0", "AfterInstall");
    let later = cell("i1", "AfterInstall");
    browser.wait_attr(&target, "data-state", "running").await?;
    assert_eq!(
        browser.attr(&later, "data-state").await?.as_deref(),
        Some("pending"),
        "concurrency 1: i1 waits for i0"
    );
    assert_eq!(
        browser
            .attr("#deployment-status .badge", "data-status")
            .await?
            .as_deref(),
        Some("in_progress")
    );
    // The page follows the deployment through the events stream (it reads every second only on coordinators
    // without the route, or after the stream broke off).
    assert_eq!(browser.text("#live").await?, "Live (events stream).");
    // Another cell's log while the deployment runs (so the screenshot shows the panel too).
    c.find(Locator::Css(&cell("i0", "BeforeInstall")))
        .await?
        .click()
        .await?;
    browser
        .wait_text("#log-text", "dashboard-log i0 BeforeInstall")
        .await?;
    let png = c.screenshot().await?;
    let dir = target_dir();
    std::fs::create_dir_all(&dir)?;
    let shot = dir.join("dashboard-screenshot.png");
    std::fs::write(&shot, &png).with_context(|| format!("writing {}", shot.display()))?;
    let written = std::fs::read(&shot)?;
    assert!(
        written.len() > 1000 && written.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG ({} bytes)",
        shot.display(),
        written.len()
    );
    // Cells are coloured by state (which also shows the stylesheet loaded under the content-security-policy).
    let colour = |css: String| async move {
        anyhow::Ok(
            c.find(Locator::Css(&css))
                .await?
                .css_value("background-color")
                .await?,
        )
    };
    let (running, pending, succeeded) = (
        colour(target.clone()).await?,
        colour(later.clone()).await?,
        colour(cell("i0", "BeforeInstall")).await?,
    );
    assert!(
        running != pending && running != succeeded && pending != succeeded,
        "running {running}, pending {pending}, succeeded {succeeded}"
    );
    // The deployment's facts, as text.
    assert_eq!(browser.text("dd[data-fact=\"revision\"]").await?, rev);
    assert_eq!(browser.text("dd[data-fact=\"group\"]").await?, "web");
    // The legend names every state, so colour is not the only cue.
    let legend = browser.text("ul.legend").await?;
    for state in [
        "pending",
        "running",
        "succeeded",
        "skipped",
        "failed",
        "cancelled",
    ] {
        assert!(legend.contains(state), "legend `{legend}` lacks {state}");
    }
    // Only the buttons that apply to a running deployment are offered.
    let displayed = |css: &'static str| async move {
        anyhow::Ok(c.find(Locator::Css(css)).await?.is_displayed().await?)
    };
    assert!(displayed("#action-stop").await?);
    assert!(!displayed("#action-rollback").await?);

    // Open the gate: the same cell then succeeds, i1's follows, and the deployment ends.
    std::fs::write(&gate, "")?;
    browser
        .wait_attr(&target, "data-state", "succeeded")
        .await?;
    browser.wait_attr(&later, "data-state", "succeeded").await?;
    browser
        .wait_attr("#deployment-status .badge", "data-status", "succeeded")
        .await?;

    // Its log, on click: the line the hook printed, as text (the markup in it is not parsed).
    c.find(Locator::Css(&target)).await?.click().await?;
    browser
        .wait_attr("#log-panel", "data-instance", "i0")
        .await?;
    assert_eq!(
        browser.attr("#log-panel", "data-event").await?.as_deref(),
        Some("AfterInstall")
    );
    let log = browser
        .wait_text("#log-text", "dashboard-log i0 AfterInstall <b>not html</b>")
        .await?;
    assert!(
        !log.contains("dashboard-log i1") && !log.contains("BeforeInstall"),
        "another cell's log: {log}"
    );
    // The full log from the logs route (the page falls back to the tail reported with the step only on
    // coordinators without it): the agent's own lines around the hook's output are there too.
    assert_eq!(browser.text("#log-note").await?, "Full log.");
    assert!(log.contains("AfterInstall scripts/hook.sh"), "{log}");
    let injected = c.find_all(Locator::Css("#log-panel b")).await?;
    assert!(injected.is_empty(), "log text was parsed as HTML");
    assert_eq!(browser.text("#error").await?, "");
    Ok(())
}

/// Run `body` against a fleet of `agents` agents and a browser session; the browser is closed whatever happens,
/// and the fleet's temp dir (logs, database) is kept when the body fails.
async fn in_browser(
    agents: usize,
    body: impl AsyncFnOnce(&Fleet, &Browser) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    in_browser_on(Fleet::start(agents)?, body).await
}

/// [`in_browser`] with a fleet already started.
async fn in_browser_on(
    fleet: Fleet,
    body: impl AsyncFnOnce(&Fleet, &Browser) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let browser = Browser::start(fleet.dir.path()).await?;
    let result = body(&fleet, &browser).await;
    browser.close().await;
    if result.is_err() {
        eprintln!("fleet kept at {}", fleet.keep().display());
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_live_deployment_and_its_logs_in_chromium() -> anyhow::Result<()> {
    in_browser(2, async |fleet, browser| drive(fleet, browser).await).await
}

/// The page's pure logic (grid columns, the events-stream parser, the URL fragment), run by the browser itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_model_functions_in_chromium() -> anyhow::Result<()> {
    in_browser(0, async |fleet, browser| {
        let c = &browser.client;
        c.goto(&format!("{}/", fleet.coordinator.url())).await?;
        // Without a token the sign-in form shows and no data is asked for.
        browser.wait_text("#login", "Operator token").await?;
        let out = c
            .execute_async(
                r##"const done = arguments[arguments.length - 1];
                import("/dashboard/model.js").then((m) => {
                  const d = { instances: [
                    { instance: "a", steps: [{ event: "A", state: "succeeded" }, { event: "B", state: "running" }] },
                    { instance: "b", steps: [{ event: "S", state: "pending" }, { event: "A", state: "pending" },
                                             { event: "B", state: "pending" }] } ] };
                  const p = new m.SseParser();
                  const msgs = [...p.feed("event: deployment\ndata: {\"x\""), ...p.feed(":1}\r"),
                                ...p.feed("\n\r\n: comment\ndata: a\ndata: b\n\n")];
                  done({
                    columns: m.gridColumns(d),
                    cells: m.gridRows(d)[0].cells.map((c) => c.state),
                    msgs,
                    token: m.takeToken("#token=t0k&deployment=d-1"),
                    actions: m.actionsFor({ status: "failed", rollback_deployment: null }),
                    log: m.logText([{ text: "a\n", truncated_bytes: 0 }, { text: "b", truncated_bytes: 7 }]),
                  });
                }, (e) => done({ error: String(e) }));"##,
                vec![],
            )
            .await?;
        assert_eq!(out["error"], serde_json::Value::Null, "{out}");
        assert_eq!(out["columns"], serde_json::json!(["S", "A", "B"]));
        assert_eq!(
            out["cells"],
            serde_json::json!(["none", "succeeded", "running"])
        );
        assert_eq!(
            out["msgs"],
            serde_json::json!([
                {"event": "deployment", "data": "{\"x\":1}", "id": ""},
                {"event": "message", "data": "a\nb", "id": ""}
            ])
        );
        assert_eq!(
            out["token"],
            serde_json::json!({"token": "t0k", "rest": "#deployment=d-1"})
        );
        assert_eq!(
            out["actions"],
            serde_json::json!({"stop": false, "forceStop": false, "rollback": true})
        );
        let log = out["log"].as_str().unwrap_or_default();
        assert!(log.starts_with("a\nb") && log.contains("7 bytes"), "{log}");

        // Signing in through the form: a wrong token is refused with the API's message, the right one works.
        let sign_in = |t: String| async move {
            let input = c.find(Locator::Id("token-input")).await?;
            input.clear().await?;
            input.send_keys(&t).await?;
            c.find(Locator::Css("#login-form button[type=submit]"))
                .await?
                .click()
                .await?;
            anyhow::Ok(())
        };
        sign_in("not-the-token".into()).await?;
        browser
            .wait_text("#login-error", "invalid token")
            .await?;
        sign_in(fleet.coordinator.admin_token.clone()).await?;
        browser.wait_text("#view", "No applications yet").await?;
        assert!(
            !c.find(Locator::Id("login")).await?.is_displayed().await?,
            "the sign-in form stays after a good token"
        );
        anyhow::Ok(())
    })
    .await
}

/// A failed deployment: the failed cell, its output (what a failed step shows even without full logs), and the link
/// to the automatic rollback, which the page follows. Opened through a deep link (`#deployment=…`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_failed_step_and_follows_the_automatic_rollback() -> anyhow::Result<()> {
    in_browser(2, async |fleet, browser| {
        let c = &browser.client;
        fleet.setup("shop", "web", "1", true)?;
        let (good, bad) = (fleet.dir.path().join("v1"), fleet.dir.path().join("v2"));
        write_bundle(&good, "v1", "0", "")?;
        write_bundle(
            &bad,
            "v2",
            "0",
            "if [ \"$LIFECYCLE_EVENT\" = ValidateService ]; then echo \"boom-line $ROLLCAGE_INSTANCE\"; exit 1; fi",
        )?;
        let (r1, r2) = (fleet.push("shop", &good)?, fleet.push("shop", &bad)?);
        let (code, _) = fleet.deploy_wait("shop", "web", &r1)?;
        assert_eq!(code, 0);
        let id = fleet.deploy("shop", "web", &r2)?;
        let failed = fleet.wait_end(&id, Duration::from_secs(120))?;
        let rollback = failed
            .rollback_deployment
            .context("no automatic rollback started")?;

        c.goto(&format!(
            "{}/#token={}&deployment={id}",
            fleet.coordinator.url(),
            fleet.coordinator.admin_token
        ))
        .await?;
        browser
            .wait_attr("#deployment-status .badge", "data-status", "failed")
            .await?;
        let url = c.current_url().await?;
        assert_eq!(url.fragment(), Some(format!("deployment={id}").as_str()));
        browser
            .wait_attr(&cell("i0", "ValidateService"), "data-state", "failed")
            .await?;
        assert_eq!(
            browser
                .attr(&cell("i1", "ValidateService"), "data-state")
                .await?
                .as_deref(),
            Some("pending"),
            "i1 never started"
        );
        // A deployment with a rollback already has no Rollback button; a finished one no Stop.
        let shown = |css: &'static str| async move {
            anyhow::Ok(c.find(Locator::Css(css)).await?.is_displayed().await?)
        };
        assert!(!shown("#action-rollback").await?);
        assert!(!shown("#action-stop").await?);

        c.find(Locator::Css(&cell("i0", "ValidateService")))
            .await?
            .click()
            .await?;
        browser.wait_text("#log-text", "boom-line i0").await?;
        assert_eq!(browser.text("#log-note").await?, "Full log.");
        // The step's report message is shown above the output.
        let message = browser.text("#log-message").await?;
        let step = failed.instances[0]
            .steps
            .iter()
            .find(|s| s.event.name() == "ValidateService")
            .context("no ValidateService step")?;
        assert!(!message.is_empty(), "no step message shown");
        assert_eq!(message, step.message);

        let link = c.find(Locator::Id("rollback-link")).await?;
        assert_eq!(link.text().await?, rollback);
        link.click().await?;
        browser
            .wait_attr("#deployment-status .badge", "data-status", "succeeded")
            .await?;
        let kind = browser.text("dd[data-fact=\"kind\"]").await?;
        assert_eq!(kind, format!("automatic rollback of {id}"));
        anyhow::Ok(())
    })
    .await
}

/// The operator buttons: Stop, then Force stop (each confirmed in a dialog) cancel a hung step; Roll back then
/// appears and, with no earlier successful deployment to go back to, shows the API's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_buttons_stop_force_stop_and_report_a_refused_rollback() -> anyhow::Result<()> {
    in_browser(1, async |fleet, browser| {
        let c = &browser.client;
        fleet.setup("shop", "web", "1", false)?;
        let bundle = fleet.dir.path().join("hang");
        // AfterInstall waits for a gate that never opens (at most 60 s).
        write_bundle(
            &bundle,
            "hang",
            "0",
            "if [ \"$LIFECYCLE_EVENT\" = AfterInstall ]; then\n\
               n=0; while [ ! -e \"$MARKERS.never\" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done\n\
             fi",
        )?;
        let rev = fleet.push("shop", &bundle)?;
        let id = fleet.deploy("shop", "web", &rev)?;
        c.goto(&format!(
            "{}/#deployment={id}&token={}",
            fleet.coordinator.url(),
            fleet.coordinator.admin_token
        ))
        .await?;
        let hung = cell("i0", "AfterInstall");
        browser.wait_attr(&hung, "data-state", "running").await?;

        // Stop: asks first; dismissing the dialog does nothing.
        c.find(Locator::Id("action-stop")).await?.click().await?;
        assert!(c.get_alert_text().await?.contains("Stop this deployment"));
        c.dismiss_alert().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fleet.status(&id)?.status.name(), "in_progress");
        c.find(Locator::Id("action-stop")).await?.click().await?;
        c.accept_alert().await?;
        browser
            .wait_attr("#deployment-status .badge", "data-status", "stopping")
            .await?;
        assert_eq!(browser.text("#action-error").await?, "");

        // Force stop cancels the hung step.
        c.find(Locator::Id("action-force-stop")).await?.click().await?;
        c.accept_alert().await?;
        browser
            .wait_attr("#deployment-status .badge", "data-status", "stopped")
            .await?;
        browser.wait_attr(&hung, "data-state", "cancelled").await?;

        // Roll back is offered now, and the API's refusal is shown as it said it.
        let rollback = c.find(Locator::Id("action-rollback")).await?;
        assert!(rollback.is_displayed().await?);
        rollback.click().await?;
        c.accept_alert().await?;
        browser
            .wait_text("#action-error", "no earlier successful deployment")
            .await?;
        anyhow::Ok(())
    })
    .await
}

/// Roles in the page: a viewer sees no Stop or Force stop (nor the Audit link); a deployer of the application sees
/// them; and a refusal the API sends anyway (the tab's token turned into a viewer's under the page) is shown with
/// the API's message. The tokens come from `rollcage token create`, which prints each alone on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_hides_what_the_role_may_not_do_and_shows_the_api_s_refusal() -> anyhow::Result<()>
{
    in_browser(1, async |fleet, browser| {
        let c = &browser.client;
        fleet.setup("shop", "web", "1", false)?;
        let bundle = fleet.dir.path().join("hang");
        // AfterInstall waits for a gate that never opens (at most 60 s); the test force-stops it at the end.
        write_bundle(
            &bundle,
            "hang",
            "0",
            "if [ \"$LIFECYCLE_EVENT\" = AfterInstall ]; then\n\
               n=0; while [ ! -e \"$MARKERS.never\" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done\n\
             fi",
        )?;
        let rev = fleet.push("shop", &bundle)?;
        let id = fleet.deploy("shop", "web", &rev)?;
        let (_, viewer) = fleet.cli(&["token", "create", "view", "--role", "viewer"])?;
        let (_, deployer) =
            fleet.cli(&["token", "create", "ci", "--role", "deployer", "--app", "shop"])?;
        let (viewer, deployer) = (viewer.trim().to_owned(), deployer.trim().to_owned());
        assert_eq!(viewer.len(), 64, "only the token on stdout: {viewer:?}");
        let shown = |css: &'static str| async move {
            anyhow::Ok(c.find(Locator::Css(css)).await?.is_displayed().await?)
        };
        let hung = cell("i0", "AfterInstall");

        c.goto(&format!(
            "{}/#deployment={id}&token={viewer}",
            fleet.coordinator.url()
        ))
        .await?;
        browser.wait_text("#whoami", "view (viewer)").await?;
        browser.wait_attr(&hung, "data-state", "running").await?;
        assert!(!shown("#action-stop").await?, "a viewer sees no Stop");
        assert!(!shown("#action-force-stop").await?);
        assert!(!shown("#audit-link").await?, "the audit trail is for admins");

        c.goto(&format!(
            "{}/#deployment={id}&token={deployer}",
            fleet.coordinator.url()
        ))
        .await?;
        browser.wait_text("#whoami", "ci (deployer for shop)").await?;
        browser.wait_attr(&hung, "data-state", "running").await?;
        assert!(shown("#action-stop").await?, "a deployer of shop may stop");

        // The tab's token becomes the viewer's behind the page's back: the button is still there, the API refuses.
        c.execute(
            "sessionStorage.setItem('rollcage.adminToken', arguments[0]);",
            vec![viewer.clone().into()],
        )
        .await?;
        c.find(Locator::Id("action-stop")).await?.click().await?;
        c.accept_alert().await?;
        browser
            .wait_text(
                "#action-error",
                "token `view` (viewer) may not stop deployments",
            )
            .await?;
        assert_eq!(fleet.status(&id)?.status.name(), "in_progress");
        fleet.cli(&["stop", &id, "--force"])?;
        anyhow::Ok(())
    })
    .await
}

/// A group's bake, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// `[analysis]` of an `in-place-lb` group (2 agents), deployed under load: one table per instance.
    Analysis,
    /// `[canary]` (steps 10/50/100) of a `blue-green` group (blue: agents 0–1, green: 2–3), the first deployment
    /// (to green, no traffic yet): one table for the deployment, every interval without a verdict.
    Canary,
}

/// Deploy through the built-in LB with `gate`, open the deployment: each bake's title names the instance (or the
/// step and weight), and its table has one row per verdict the API has, with its class, interval, step, result and
/// both groups' figures.
async fn bakes_are_shown(gate: Gate) -> anyhow::Result<()> {
    let agents = if gate == Gate::Analysis { 2 } else { 4 };
    let (ports, apps) = DemoApps::slots(agents)?;
    let bin = rollcage_bin()?;
    let fleet = Fleet::start_with_vars(agents, |i| {
        vec![
            format!("PORT={}", ports[i]),
            format!("ROLLCAGE_BIN={}", bin.display()),
            format!("DEMO_PID={}", apps.0[i].display()),
        ]
    })?;
    let groups: &[&str] = if gate == Gate::Analysis {
        &["web"]
    } else {
        &["blue", "green"]
    };
    let lb = BuiltinLb::start(fleet.dir.path(), groups, groups[0])?;
    in_browser_on(fleet, async |fleet, browser| {
        let c = &browser.client;
        let servers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut thresholds = serde_json::json!({
            "bake_secs": 2,
            "interval_secs": 1,
            "min_requests": 5,
            "max_error_rate": 0.05,
            "max_p99_ratio": 10.0,
            "failure_limit": 0,
        });
        let (style, server_groups, active, extra) = match gate {
            Gate::Analysis => (
                "in-place-lb",
                serde_json::json!({ "web": servers }),
                None,
                serde_json::json!({ "analysis": thresholds }),
            ),
            Gate::Canary => {
                thresholds["steps"] = serde_json::json!([10, 50, 100]);
                (
                    "blue-green",
                    serde_json::json!({ "blue": servers[..2], "green": servers[2..] }),
                    Some("blue"),
                    serde_json::json!({ "canary": thresholds }),
                )
            }
        };
        create_lb_group_with(
            fleet,
            &LbGroup {
                style,
                targets: servers.clone(),
                driver: lb.driver(),
                server_groups,
                active,
                wait_for_continue: false,
            },
            extra,
        )?;
        let bundle = fleet.dir.path().join("bundle-v1");
        write_app_bundle_with_faults(&bundle, "v1", "", 20, &Faults::default())?;
        let rev = fleet.push("shop", &bundle)?;
        let load = (gate == Gate::Analysis).then(|| Load::start(lb.service, 4));
        let (_, d) = fleet.deploy_wait("shop", "web", &rev)?;
        let _ = load.map(Load::finish);
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        assert_eq!(d.bakes.len(), if gate == Gate::Analysis { 2 } else { 1 });

        c.goto(&format!(
            "{}/#token={}&deployment={}",
            fleet.coordinator.url(),
            fleet.coordinator.admin_token,
            d.id
        ))
        .await?;
        browser
            .wait_attr("#deployment-status .badge", "data-status", "succeeded")
            .await?;
        for bake in &d.bakes {
            let (name, title) = match &bake.instance {
                Some(i) => (i.clone(), format!("Analysis of {i} (done)")),
                None => (
                    "canary".to_owned(),
                    "Canary: step 3 of 3, 100 % of traffic on the new group (done)".to_owned(),
                ),
            };
            let css = format!(".bake[data-bake=\"{name}\"]");
            browser.wait_text(&format!("{css} h2"), &title).await?;
            assert_eq!(
                bake.verdicts.len(),
                if gate == Gate::Analysis { 2 } else { 6 },
                "{name}"
            );
            let rows = c.find_all(Locator::Css(&format!("{css} tbody tr"))).await?;
            assert_eq!(
                rows.len(),
                bake.verdicts.len(),
                "{name}: one row per verdict"
            );
            for (row, v) in rows.iter().zip(&bake.verdicts) {
                let label = v.outcome.label();
                assert_eq!(
                    row.attr("class").await?.as_deref(),
                    Some(format!("verdict-{label}").as_str())
                );
                let step = match gate {
                    Gate::Analysis => "—".to_owned(),
                    Gate::Canary => format!("{} ({})", v.step + 1, v.weight),
                };
                let text = row.text().await?;
                assert!(
                    text.starts_with(&v.interval.to_string())
                        && text.contains(&step)
                        && text.contains(&label.replace('_', " "))
                        && text.matches(" req · ").count() == 2,
                    "{name} interval {}: `{text}`",
                    v.interval
                );
            }
        }
        assert_eq!(browser.text("#error").await?, "");
        anyhow::Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_each_instances_analysis_verdicts() -> anyhow::Result<()> {
    bakes_are_shown(Gate::Analysis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_canarys_steps_and_verdicts() -> anyhow::Result<()> {
    bakes_are_shown(Gate::Canary).await
}
