//! The one rule for names of variables given to hooks (`--var`, `vars` in the agent's config, an AppSpec
//! `sandbox.env` grant): a plain identifier, and never a variable that changes how programs are loaded.
//!
//! Every hook's environment is built from nothing, so the only way such a variable could reach a hook is through
//! these inputs. `LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT` and the rest make every dynamically linked program a
//! hook starts (its shell, `sudo`, the daemons it launches) load code from a path of the setter's choosing: a
//! `--var LD_PRELOAD=/tmp/x.so` would run `/tmp/x.so` inside every hook, `runas` users' hooks included. The list is
//! glibc's own list of variables it ignores for setuid programs (`UNSECURE_ENVVARS`, less `TMPDIR`, `TZDIR`,
//! `LOCALDOMAIN` and `RES_OPTIONS`, which select data rather than code), plus macOS's `DYLD_*`.

/// Variables that make the dynamic loader or libc load code or code-like data from a path. Matched exactly;
/// [`LOADER_VAR_PREFIXES`] covers whole families.
pub const LOADER_VARS: [&str; 8] = [
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
];

/// Prefixes of loader variable families: every `LD_*` (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`, …) and macOS's
/// `DYLD_*`.
pub const LOADER_VAR_PREFIXES: [&str; 2] = ["LD_", "DYLD_"];

/// What a hook variable name must be, for error messages.
pub const VAR_NAME_RULE: &str = "letters, digits and `_`, not starting with a digit";

/// True for a variable that changes how programs are loaded (see the module doc). Case-sensitive, as the loader is.
pub fn is_loader_var(name: &str) -> bool {
    LOADER_VARS.contains(&name) || LOADER_VAR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A variable name a hook may not be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadVarName {
    /// Not an identifier.
    NotAnIdentifier(String),
    /// A loader variable.
    Loader(String),
}

impl std::fmt::Display for BadVarName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAnIdentifier(n) => {
                write!(f, "invalid variable name `{n}`: expected {VAR_NAME_RULE}")
            }
            Self::Loader(n) => write!(
                f,
                "variable `{n}` is refused: it changes how programs are loaded (LD_*, DYLD_*, GCONV_PATH, \
                 GLIBC_TUNABLES, …), so it would run code of its setter's choosing inside every hook; hooks never \
                 get such variables"
            ),
        }
    }
}

impl std::error::Error for BadVarName {}

/// Check a hook variable name: an identifier, and not a loader variable.
pub fn check_var_name(name: &str) -> Result<(), BadVarName> {
    let identifier = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier {
        return Err(BadVarName::NotAnIdentifier(name.to_owned()));
    }
    if is_loader_var(name) {
        return Err(BadVarName::Loader(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_variables_are_refused_and_plain_names_pass() {
        for bad in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "LD_DEBUG_OUTPUT",
            "DYLD_INSERT_LIBRARIES",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
        ] {
            assert_eq!(
                check_var_name(bad),
                Err(BadVarName::Loader(bad.to_owned())),
                "{bad}"
            );
        }
        for good in ["PORT", "REGION", "OLD_PRELOAD", "ld_preload_note", "TMPDIR"] {
            assert_eq!(check_var_name(good), Ok(()), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(
                matches!(check_var_name(bad), Err(BadVarName::NotAnIdentifier(_))),
                "{bad}"
            );
        }
    }
}
