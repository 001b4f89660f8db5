//! CodeDeploy's minimum healthy hosts, as a group's alternative to a plain concurrency: the arithmetic only.
//!
//! A minimum is `HOST_COUNT` (an absolute number of instances, ≥ 0) or `FLEET_PERCENT` (0–99 % of the instances
//! in the deployment, converted to a count when the deployment starts and **rounded up**, as CodeDeploy does). The
//! instances that may be deployed to at once follow from it: every instance but the minimum; with a minimum of 0,
//! all of them. CodeDeploy's documented example: 9 instances with `HOST_COUNT` 6 → 3 at a time; with
//! `FLEET_PERCENT` 40 → ⌈3.6⌉ = 4 stay healthy, 5 at a time. A minimum that leaves no instance to deploy to (95 %
//! of 10 → 10) is refused when the deployment is created, as CodeDeploy fails it at once; the error carries the
//! arithmetic. As instances fail, fewer may be in flight, so that the healthy ones never drop below the minimum
//! ([`MinHealthy::window`]); when none may start any more, the deployment fails.
//!
//! On the wire a minimum is spelled like a concurrency, `N` or `P%` (see [`crate::wire::Concurrency`], where it is
//! `min-healthy:N` / `min-healthy:P%`).

use std::fmt;
use std::str::FromStr;

/// The largest `FLEET_PERCENT` (CodeDeploy's bound: 100 % would leave nothing to deploy to).
pub const MAX_FLEET_PERCENT: u8 = 99;

/// The accepted spellings, for messages.
pub const MIN_HEALTHY_FORMS: &str = "a count of instances ≥ 0 (`6`, CodeDeploy's HOST_COUNT) or a percentage 0–99 of the deployment's instances \
     (`40%`, FLEET_PERCENT, rounded up)";

/// The minimum number of instances that stay healthy during a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MinHealthy {
    /// CodeDeploy's `HOST_COUNT`: at least this many instances.
    HostCount(u32),
    /// CodeDeploy's `FLEET_PERCENT`: at least this percentage (0–99) of the instances, rounded up.
    FleetPercent(u8),
}

/// A minimum that leaves no instance to deploy to: the figures, for the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooFewInstances {
    /// The minimum.
    pub min: MinHealthy,
    /// Instances in the deployment.
    pub total: usize,
    /// Instances that must stay healthy.
    pub required: usize,
}

impl fmt::Display for TooFewInstances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            min,
            total,
            required,
        } = self;
        write!(f, "minimum healthy hosts {min} of {total} instance(s): ")?;
        if let MinHealthy::FleetPercent(p) = min {
            let hundredths = total.saturating_mul(usize::from(*p));
            write!(
                f,
                "{p}% × {total} = {}.{:02}, rounded up to {required}; ",
                hundredths / 100,
                hundredths % 100
            )?;
        }
        write!(
            f,
            "{total} − {required} = {} instance(s) left to deploy to at a time, and at least 1 is needed; lower \
             the minimum or add instances",
            total.saturating_sub(*required)
        )
    }
}

impl std::error::Error for TooFewInstances {}

impl MinHealthy {
    /// Instances of a deployment of `total` that must stay healthy (a percentage rounded up).
    pub fn required(self, total: usize) -> usize {
        match self {
            Self::HostCount(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Self::FleetPercent(p) => total.saturating_mul(usize::from(p)).div_ceil(100),
        }
    }

    /// How many of `total` instances may be deployed to at once: all but the minimum (all when it is 0). Refused
    /// when that leaves none (an empty deployment has nothing to refuse).
    pub fn batch(self, total: usize) -> Result<usize, TooFewInstances> {
        let required = self.required(total);
        if total == 0 || required == 0 {
            return Ok(total);
        }
        match total.checked_sub(required) {
            Some(batch) if batch > 0 => Ok(batch),
            _ => Err(TooFewInstances {
                min: self,
                total,
                required,
            }),
        }
    }

    /// How many instances may be in flight once `failed` have failed: the batch, less one per failure, so that the
    /// healthy instances never drop below the minimum. 0 means no instance may start any more.
    pub fn window(self, total: usize, failed: usize) -> usize {
        match self.required(total) {
            0 => total.saturating_sub(failed),
            required => total.saturating_sub(required.saturating_add(failed)),
        }
    }
}

/// A string that is not `N` (≥ 0) or `P%` (0–99).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMinHealthy(pub String);

impl fmt::Display for InvalidMinHealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid minimum healthy hosts `{}`: expected {MIN_HEALTHY_FORMS}",
            self.0
        )
    }
}

impl std::error::Error for InvalidMinHealthy {}

/// ASCII digits only, no sign, no leading zero (one spelling per value, which is also how it prints).
fn plain_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

impl FromStr for MinHealthy {
    type Err = InvalidMinHealthy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidMinHealthy(s.to_owned());
        if let Some(p) = s.strip_suffix('%') {
            if !plain_decimal(p) {
                return Err(bad());
            }
            return match p.parse::<u8>() {
                Ok(p) if p <= MAX_FLEET_PERCENT => Ok(Self::FleetPercent(p)),
                _ => Err(bad()),
            };
        }
        if !plain_decimal(s) {
            return Err(bad());
        }
        s.parse::<u32>().map(Self::HostCount).map_err(|_| bad())
    }
}

impl fmt::Display for MinHealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostCount(n) => write!(f, "{n}"),
            Self::FleetPercent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min(s: &str) -> MinHealthy {
        match s.parse() {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// CodeDeploy's documented examples (API reference `MinimumHealthyHosts`, the predefined configurations and
    /// "instance health"), each (instances, minimum, must stay healthy, deployed to at a time).
    #[test]
    fn batch_sizes_match_codedeploys_documented_examples() {
        let table: &[(usize, &str, usize, usize)] = &[
            // "9 instances, HOST_COUNT 6: deploy to up to 3 at a time; success needs 6."
            (9, "6", 6, 3),
            // "9 instances, FLEET_PERCENT 40: deploy to up to 5 at a time; success needs 4" (3.6 rounded up).
            (9, "40%", 4, 5),
            // HalfAtATime (FLEET_PERCENT 50): "9 instances → 4 at a time, needs 5".
            (9, "50%", 5, 4),
            (10, "50%", 5, 5),
            // AllAtOnce (HOST_COUNT 0): every instance at once.
            (9, "0", 0, 9),
            (1, "0", 0, 1),
            (9, "0%", 0, 9),
            // One left healthy less than the fleet: one at a time.
            (10, "9", 9, 1),
            (100, "99%", 99, 1),
            // Rounding up at the edges: 1% of 1 is 0.01 → 1; 10% of 10 is exactly 1.
            (2, "1%", 1, 1),
            (10, "10%", 1, 9),
            (11, "10%", 2, 9),
            (3, "33%", 1, 2),
            (3, "34%", 2, 1),
        ];
        for &(total, spec, required, batch) in table {
            let m = min(spec);
            assert_eq!(m.required(total), required, "{spec} of {total}: required");
            assert_eq!(m.batch(total), Ok(batch), "{spec} of {total}: batch");
            assert_eq!(m.window(total, 0), batch, "{spec} of {total}: window");
        }
    }

    #[test]
    fn a_minimum_that_leaves_nothing_to_deploy_to_is_refused_with_the_arithmetic() {
        // CodeDeploy's "instance health" example: 95% of 10 → 9.5 rounded up → 10 healthy, none to deploy to.
        let Err(e) = min("95%").batch(10) else {
            panic!("accepted")
        };
        assert_eq!(
            e,
            TooFewInstances {
                min: MinHealthy::FleetPercent(95),
                total: 10,
                required: 10
            }
        );
        let text = e.to_string();
        for part in [
            "95% × 10 = 9.50, rounded up to 10",
            "10 − 10 = 0",
            "at least 1",
        ] {
            assert!(text.contains(part), "`{part}` missing from: {text}");
        }
        let Err(e) = min("6").batch(6) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("6 − 6 = 0"), "{e}");
        let Err(e) = min("7").batch(6) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("6 − 7 = 0"), "{e}");
        assert!(min("50%").batch(1).is_err(), "⌈0.5⌉ = 1 of 1");
        assert!(min("99%").batch(99).is_err(), "⌈98.01⌉ = 99 of 99");
        // Nothing to refuse in an empty deployment (it is refused for having no instances).
        assert_eq!(min("6").batch(0), Ok(0));
    }

    #[test]
    fn each_failure_narrows_the_window_so_healthy_never_drops_below_the_minimum() {
        let m = min("6");
        let windows: Vec<usize> = (0..=4).map(|failed| m.window(9, failed)).collect();
        assert_eq!(windows, [3, 2, 1, 0, 0]);
        // All at once stays all (less the failed, which are done).
        assert_eq!(min("0").window(9, 2), 7);
    }

    #[test]
    fn spellings_are_exact_and_print_back_the_same() {
        for s in ["0", "6", "4294967295", "0%", "40%", "99%"] {
            assert_eq!(min(s).to_string(), s);
        }
        for bad in [
            "",
            "-1",
            "+1",
            "06",
            "1.5",
            "100%",
            "05%",
            "%",
            " 6",
            "6 ",
            "all",
            "4294967296",
        ] {
            assert!(bad.parse::<MinHealthy>().is_err(), "`{bad}` accepted");
        }
        let Err(e) = "100%".parse::<MinHealthy>() else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("0–99"), "{e}");
    }
}
