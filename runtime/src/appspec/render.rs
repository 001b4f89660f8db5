//! The text forms the system tools take: ACL entries as `setfacl` reads them, SELinux ranges as `semanage -r`
//! reads them (contiguous categories compressed, as CodeDeploy's `get_range`), modes in octal.

use super::model::{AclEntry, AclTag, Mode, SelinuxRange};
use std::fmt;

impl fmt::Display for AclEntry {
    /// `[default:]user|group|mask|other:name:rwx`, e.g. `default:group:ops:r-x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.default {
            f.write_str("default:")?;
        }
        let tag = match self.tag {
            AclTag::User => "user",
            AclTag::Group => "group",
            AclTag::Mask => "mask",
            AclTag::Other => "other",
        };
        let bit = |mask: u8, c: char| if self.perms & mask != 0 { c } else { '-' };
        write!(
            f,
            "{tag}:{}:{}{}{}",
            self.name,
            bit(4, 'r'),
            bit(2, 'w'),
            bit(1, 'x')
        )
    }
}

impl fmt::Display for SelinuxRange {
    /// `sN[-sM][:cX[.cY](,cZ)*]`, e.g. `s3-s5:c0.c7,c13`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.low)?;
        if self.high != self.low {
            write!(f, "-s{}", self.high)?;
        }
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &c in &self.categories {
            match runs.last_mut() {
                Some((_, high)) if *high + 1 == c => *high = c,
                _ => runs.push((c, c)),
            }
        }
        for (i, (low, high)) in runs.iter().enumerate() {
            f.write_str(if i == 0 { ":" } else { "," })?;
            if low == high {
                write!(f, "c{low}")?;
            } else {
                write!(f, "c{low}.c{high}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Mode {
    /// Octal, at least three digits (`644`, `0755` → `755`, `6763`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03o}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appspec::acl::parse_acl;
    use crate::appspec::selinux::parse_range;

    #[test]
    fn acl_entries_render_for_setfacl() {
        let shown: Vec<String> = ["d:g:ops:5", "u:bob:rw", "m:7", "mask:"]
            .iter()
            .filter_map(|t| parse_acl(t).ok())
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "default:group:ops:r-x",
                "user:bob:rw-",
                "mask::rwx",
                "mask::---"
            ]
        );
    }

    #[test]
    fn ranges_round_trip_with_compressed_categories() {
        for (input, shown) in [
            ("s3-s5:c0.c7,c13", "s3-s5:c0.c7,c13"),
            ("s0:c0.c1,c15,c7.c9", "s0:c0.c1,c7.c9,c15"),
            ("s5", "s5"),
            ("s0-s0:c3,c4,c5", "s0:c3.c5"),
        ] {
            assert_eq!(
                parse_range(input).map(|r| r.to_string()),
                Ok(shown.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn modes_render_in_octal() {
        assert_eq!(Mode(0o644).to_string(), "644");
        assert_eq!(Mode(0o12).to_string(), "012");
        assert_eq!(Mode(0o6763).to_string(), "6763");
    }
}
