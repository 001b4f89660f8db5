//! The error type of a hook and the exit code it maps to.

use std::fmt;

/// The result of a hook function.
pub type HookResult<T = ()> = Result<T, HookError>;

/// Why a hook failed, and the exit code the agent reports for it.
///
/// Any `std::error::Error` converts into it with exit code 1, so `?` works on I/O and [`crate::http`] errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookError {
    code: u8,
    message: String,
}

/// Highest exit code a hook may use: the host rejects 126 and up from a WASI preview-1 module as invalid (and a
/// component keeps to the same range, so a hook behaves the same built either way).
pub const MAX_EXIT_CODE: u8 = 125;

impl HookError {
    /// A failure with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    /// A failure with a chosen exit code. 0 becomes 1 (an error never reports success) and codes above
    /// [`MAX_EXIT_CODE`] become [`MAX_EXIT_CODE`].
    pub fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self {
            code: code.clamp(1, MAX_EXIT_CODE),
            message: message.into(),
        }
    }

    /// The exit code (1–125).
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for HookError {
    fn from(e: E) -> Self {
        Self::new(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_stay_in_the_wasi_range() {
        assert_eq!(HookError::with_code(0, "x").code(), 1);
        assert_eq!(HookError::with_code(3, "x").code(), 3);
        assert_eq!(HookError::with_code(200, "x").code(), MAX_EXIT_CODE);
        let io: HookError = std::io::Error::other("disk on fire").into();
        assert_eq!((io.code(), io.message()), (1, "disk on fire"));
    }
}
