//! The demo's closing summary: one row per deployment (the automatic rollback is a deployment of its own, with
//! its own id, so it has its row and counts in N) and the line `demo: N deployments, M requests, F failed`.

/// One deployment in the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `v2`, or `v4 rollback`.
    pub label: String,
    /// Rolling, rolling with LB, blue/green, rollback.
    pub mode: String,
    /// The coordinator's final status.
    pub outcome: String,
    /// Creation to end.
    pub seconds: f64,
    /// Instances it covered.
    pub instances: usize,
    /// Requests through the LB while it ran.
    pub requests: u64,
    /// Of which failed.
    pub failed: u64,
    /// Every expectation on it held.
    pub as_expected: bool,
}

/// The summary table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<12} {:<17} {:<10} {:>9} {:>9} {:>9} {:>7}  {}\n",
        "deployment", "mode", "outcome", "duration", "instances", "requests", "failed", "expected"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<12} {:<17} {:<10} {:>8.1}s {:>9} {:>9} {:>7}  {}\n",
            r.label,
            r.mode,
            r.outcome,
            r.seconds,
            r.instances,
            r.requests,
            r.failed,
            if r.as_expected { "yes" } else { "NO" }
        ));
    }
    out
}

/// The last line: `demo: N deployments, M requests, F failed` (M and F: every request through the LB).
pub fn summary_line(deployments: usize, requests: u64, failed: u64) -> String {
    format!("demo: {deployments} deployments, {requests} requests, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, failed: u64, as_expected: bool) -> Row {
        Row {
            label: label.into(),
            mode: "rolling with LB".into(),
            outcome: "succeeded".into(),
            seconds: 12.34,
            instances: 4,
            requests: 812,
            failed,
            as_expected,
        }
    }

    #[test]
    fn the_table_has_a_header_and_one_aligned_row_per_deployment() {
        let t = table(&[row("v2", 0, true), row("v4 rollback", 3, false)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        for col in [
            "deployment",
            "mode",
            "outcome",
            "duration",
            "instances",
            "requests",
            "failed",
        ] {
            assert!(lines[0].contains(col), "{col} in {}", lines[0]);
        }
        assert!(lines[1].starts_with("v2 "));
        assert!(lines[1].contains("rolling with LB"));
        assert!(lines[1].contains("12.3s"));
        assert!(lines[1].ends_with("yes"));
        assert!(lines[2].ends_with("NO"));
        // Columns line up: every line is as long as the header up to the last column.
        let at = |l: &str| l.find("812").unwrap_or(0);
        assert_eq!(at(lines[1]), at(lines[2]));
    }

    #[test]
    fn the_summary_line_is_exact() {
        assert_eq!(
            summary_line(5, 2403, 0),
            "demo: 5 deployments, 2403 requests, 0 failed"
        );
    }
}
