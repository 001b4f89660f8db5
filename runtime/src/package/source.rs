//! Turning a CLI-style bundle argument into a [`Source`].

use super::Source;
use super::error::PackageError;
use std::path::Path;

impl Source {
    /// Parse a bundle argument: a `file://`, `http://` or `https://` URL, or an existing local directory (copied)
    /// or file (an archive). Anything else is an error that says what was expected.
    pub fn parse(input: &str) -> Result<Self, PackageError> {
        if let Some((scheme, _)) = input.split_once("://") {
            let is_scheme = !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if is_scheme {
                let url = url::Url::parse(input).map_err(|e| PackageError::InvalidSource {
                    input: input.to_owned(),
                    reason: format!("not a valid URL: {e}"),
                })?;
                return match url.scheme() {
                    "file" | "http" | "https" => Ok(Self::Url(url)),
                    _ => Err(unsupported_scheme(&url)),
                };
            }
        }
        let path = Path::new(input);
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(Self::Directory(path.to_owned())),
            Ok(m) if m.is_file() => Ok(Self::Archive(path.to_owned())),
            Ok(_) => Err(PackageError::InvalidSource {
                input: input.to_owned(),
                reason: "not a regular file or directory".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(PackageError::SourceNotFound {
                    input: input.to_owned(),
                })
            }
            Err(e) => Err(PackageError::io("stat", path, e)),
        }
    }

    /// How the source is named in logs and errors.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Directory(p) | Self::Archive(p) => p.display().to_string(),
            Self::Url(u) => super::http::redact(u),
            Self::Stored { sha256, .. } => format!("stored bundle {sha256}"),
        }
    }
}

/// The error for a URL whose scheme no source kind reads.
pub(crate) fn unsupported_scheme(url: &url::Url) -> PackageError {
    PackageError::InvalidSource {
        input: url.to_string(),
        reason: format!(
            "unsupported URL scheme `{}`: expected file, http or https",
            url.scheme()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_paths_and_errors() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("b.tgz");
        std::fs::write(&file, b"x")?;
        let dir = tmp.path().to_str().ok_or("non-UTF-8 tmp dir")?;
        assert_eq!(
            Source::parse(dir)?,
            Source::Directory(tmp.path().to_owned())
        );
        let f = file.to_str().ok_or("non-UTF-8 tmp dir")?;
        assert_eq!(Source::parse(f)?, Source::Archive(file.clone()));
        assert!(
            matches!(Source::parse("https://example.com/b.zip")?, Source::Url(u) if u.scheme() == "https")
        );
        assert!(
            matches!(Source::parse("file:///srv/b.tar")?, Source::Url(u) if u.scheme() == "file")
        );
        assert!(matches!(
            Source::parse("s3://bucket/key"),
            Err(PackageError::InvalidSource { .. })
        ));
        assert!(matches!(
            Source::parse("/no/such/bundle"),
            Err(PackageError::SourceNotFound { .. })
        ));
        Ok(())
    }
}
