//! What can go wrong while fetching, verifying or unpacking a revision. Every variant names the input (URL, path or
//! archive entry) and what was expected instead.

use std::path::PathBuf;

/// Fetching or unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A `--bundle`-style input is neither an existing path nor a supported URL.
    #[error(
        "bundle source `{input}` not found: expected an existing directory or archive file, or a file://, http:// or https:// URL"
    )]
    SourceNotFound {
        /// The input as given.
        input: String,
    },
    /// A source that exists but cannot be used (unsupported URL scheme, not a file or directory, ...).
    #[error("invalid bundle source `{input}`: {reason}")]
    InvalidSource {
        /// The input as given.
        input: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The expected checksum is not a sha256 in hex.
    #[error("invalid expected sha256 `{value}`: expected 64 hexadecimal digits")]
    InvalidChecksum {
        /// The value as given.
        value: String,
    },
    /// An expected checksum was given for a directory source, which has no archive bytes to hash.
    #[error(
        "an expected sha256 was given for directory source {path}, but only archives can be verified"
    )]
    ChecksumNotApplicable {
        /// The directory.
        path: PathBuf,
    },
    /// The fetched bytes do not hash to the expected value. Nothing was kept.
    #[error("sha256 mismatch for {origin}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// Where the bytes came from.
        origin: String,
        /// The expected sha256.
        expected: String,
        /// The sha256 of what was fetched.
        actual: String,
    },
    /// Not enough free space for the revision: found before writing what would not fit (see `space`).
    #[error(
        "not enough free space on {}: {what} needs {}, {} free; free some space on the host (or lower \
         the agent's --max-cache-bytes) and deploy again",
        path.display(),
        super::space::human(*needed),
        super::space::human(*free)
    )]
    NoSpace {
        /// Where it would be written.
        path: PathBuf,
        /// What needs the space.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// An archive in the host's bundle store no longer hashes to its name. It was removed from the store.
    #[error(
        "the stored bundle {path} no longer has the sha256 it was stored under (expected {expected}, got {actual}); \
         it was removed from the bundle store, so the next attempt downloads the revision again"
    )]
    StoredMismatch {
        /// The stored file.
        path: PathBuf,
        /// Its name: the sha256 it had when stored.
        expected: String,
        /// What it hashes to now.
        actual: String,
    },
    /// The host requires a signed revision and this one's signature is missing or not acceptable. Nothing was
    /// unpacked.
    #[error("revision {origin} refused: {reason}")]
    Signature {
        /// Where the archive came from.
        origin: String,
        /// Why ([`rollcage_signing::VerifyError`] names it: no signature, unknown key, bad signature, namespace).
        /// Shown in the message (which becomes the step's report), so not also a `source()`.
        reason: rollcage_signing::VerifyError,
    },
    /// A local I/O operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done ("create", "read", "rename", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the bundle's bytes failed part-way (connection reset, idle timeout, read error).
    #[error("download of {origin} failed: {detail}")]
    Download {
        /// Where the bytes came from.
        origin: String,
        /// What went wrong.
        detail: String,
    },
    /// The HTTP request could not be made or answered (DNS, connect, TLS, timeout before the headers).
    #[error("HTTP request to {url} failed: {detail}")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The server answered with a non-2xx status.
    #[error("HTTP GET {url} returned {status}: expected a 2xx response")]
    HttpStatus {
        /// The URL requested (after redirects).
        url: String,
        /// The status code.
        status: u16,
    },
    /// A redirect could not be followed (missing/invalid `Location`, too many hops, https → http downgrade).
    #[error("cannot follow redirect from {url}: {reason}")]
    Redirect {
        /// The URL that answered with the redirect.
        url: String,
        /// Why it was not followed.
        reason: String,
    },
    /// The bundle is larger than any archive within the unpack limits can be.
    #[error(
        "bundle {origin} is larger than {limit} bytes: expected at most the unpack limit plus headers"
    )]
    BundleTooLarge {
        /// Where the bytes came from.
        origin: String,
        /// The most bytes allowed.
        limit: u64,
    },
    /// The bundle's first bytes are not those of a tar, gzip or zip file.
    #[error(
        "{origin} is not a tar, tar.gz or zip archive (detected by content, first bytes {head})"
    )]
    UnknownFormat {
        /// Where the bytes came from.
        origin: String,
        /// Hex of up to the first 8 bytes.
        head: String,
    },
    /// The archive is malformed (bad header, truncated stream, corrupt compression).
    #[error("malformed archive {origin}{}: {detail}", at_entry(entry))]
    Malformed {
        /// Where the bytes came from.
        origin: String,
        /// The entry being read, when known.
        entry: Option<String>,
        /// The parser's message.
        detail: String,
    },
    /// An entry name is an absolute path.
    #[error(
        "archive entry `{entry}` has an absolute path: expected a path relative to the revision root"
    )]
    AbsolutePath {
        /// The entry name.
        entry: String,
    },
    /// An entry name has a `..` component.
    #[error(
        "archive entry `{entry}` contains a `..` component: expected a path inside the revision"
    )]
    ParentTraversal {
        /// The entry name.
        entry: String,
    },
    /// A symlink or hardlink whose target resolves outside the revision.
    #[error(
        "{kind} `{entry}` -> `{target}` resolves outside the revision: expected a target inside it"
    )]
    LinkEscapes {
        /// `symlink` or `hardlink`.
        kind: &'static str,
        /// The entry name.
        entry: String,
        /// The link target as archived.
        target: String,
    },
    /// A hardlink whose target is not a regular file unpacked earlier.
    #[error(
        "hardlink `{entry}` -> `{target}`: expected the target to be a regular file earlier in the archive"
    )]
    HardlinkTarget {
        /// The entry name.
        entry: String,
        /// The link target as archived.
        target: String,
    },
    /// An entry would be written through a symlink (e.g. `a -> /etc` then `a/passwd`).
    #[error(
        "archive entry `{entry}` would be written through symlink `{link}`: expected real directories only"
    )]
    ThroughSymlink {
        /// The entry name.
        entry: String,
        /// The symlink on its path, relative to the archive root.
        link: String,
    },
    /// An entry conflicts with an earlier one (a file where a directory is needed, or replacing a directory).
    #[error("archive entry `{entry}` conflicts with an earlier entry: {detail}")]
    Conflict {
        /// The entry name.
        entry: String,
        /// What clashes.
        detail: String,
    },
    /// A device, fifo or socket entry.
    #[error("archive entry `{entry}` is a {kind}: expected only files, directories and links")]
    SpecialFile {
        /// The entry name.
        entry: String,
        /// `character device`, `block device`, `fifo`, `socket`.
        kind: &'static str,
    },
    /// An entry type we do not unpack (sparse file, encrypted zip member, ...).
    #[error("archive entry `{entry}` is not supported: {kind}")]
    UnsupportedEntry {
        /// The entry name.
        entry: String,
        /// What it is.
        kind: String,
    },
    /// More entries than [`UnpackLimits::max_entries`](super::UnpackLimits).
    #[error("archive has more than {limit} entries (limit reached at `{entry}`)")]
    TooManyEntries {
        /// The limit.
        limit: u64,
        /// The first entry over the limit.
        entry: String,
    },
    /// More unpacked bytes than [`UnpackLimits::max_bytes`](super::UnpackLimits).
    #[error("archive unpacks to more than {limit} bytes (limit reached at `{entry}`)")]
    TooManyBytes {
        /// The limit.
        limit: u64,
        /// The entry being written when the limit was crossed.
        entry: String,
    },
    /// An entry name, link target or extension record longer than the limit (see [`super::entry_path`]). Only a
    /// clipped prefix of the name is kept.
    #[error(
        "archive {what} of {len} bytes starting `{prefix}` is too long: expected at most {limit} bytes"
    )]
    NameTooLong {
        /// `entry name`, `name component`, `symlink target`, `hardlink target`, `GNU long name`, ...
        what: &'static str,
        /// Its length in bytes, as archived (or as the archive declares it, when it was not read).
        len: u64,
        /// The limit in bytes.
        limit: u64,
        /// The start of the name, clipped.
        prefix: String,
    },
    /// A pax extended header larger than [`MAX_PAX_HEADER_BYTES`](super::archive).
    #[error(
        "pax extended header at byte {offset} declares {len} bytes: expected at most {limit} bytes"
    )]
    ExtensionTooLarge {
        /// Byte offset of its header in the (decompressed) tar stream.
        offset: u64,
        /// Its declared size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// An entry nested deeper than [`UnpackLimits::max_depth`](super::UnpackLimits).
    #[error("archive entry `{entry}` is {depth} directories deep: expected at most {limit} levels")]
    TooDeep {
        /// The entry name (clipped).
        entry: String,
        /// Its depth.
        depth: u64,
        /// The limit.
        limit: u64,
    },
    /// The same path names a file or link twice: a later entry would silently replace what an earlier one (the one a
    /// reviewer may have read) unpacked.
    #[error("archive names `{entry}` twice ({first} and {second}): expected each path once")]
    DuplicateEntry {
        /// The path (normalised, clipped).
        entry: String,
        /// Where the first entry is.
        first: EntryPosition,
        /// Where the second is.
        second: EntryPosition,
    },
    /// What the unpacker must remember until the end (symlinks for the final escape check, modes of directories
    /// that are not writable by their owner) exceeds its bound.
    #[error(
        "archive needs more than {limit} bytes to track its symlinks and read-only directories \
         (limit reached at `{entry}`): expected fewer or shorter ones"
    )]
    TooMuchToTrack {
        /// The limit in bytes.
        limit: u64,
        /// The entry that crossed it (clipped).
        entry: String,
    },
    /// A zip whose central directory is larger than [`MAX_ZIP_DIRECTORY_BYTES`](super::archive).
    #[error(
        "zip {origin} has a central directory of {bytes} bytes: expected at most {limit} bytes"
    )]
    ZipDirectoryTooLarge {
        /// Where the bytes came from.
        origin: String,
        /// Its declared size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A zip listing more members than [`MAX_ZIP_MEMBERS`](super::MAX_ZIP_MEMBERS).
    #[error(
        "zip {origin} lists {members} members: expected at most {limit} (a zip's whole directory is held in \
         memory while it is read; a larger revision can be a tar.gz, which is streamed)"
    )]
    ZipTooManyMembers {
        /// Where the bytes came from.
        origin: String,
        /// Members its end record declares.
        members: u64,
        /// The limit.
        limit: u64,
    },
    /// Bytes after the last gzip member that are neither another member nor zero padding.
    #[error(
        "gzip stream of {origin} ends at byte {end}; {trailing} bytes of trailing data follow: \
         expected nothing (or only zero padding) after the last gzip member"
    )]
    TrailingData {
        /// Where the bytes came from.
        origin: String,
        /// Offset (in the compressed bundle) where the last gzip member ends.
        end: u64,
        /// How many bytes follow it.
        trailing: u64,
    },
    /// A deployment dir name is not a plain name.
    #[error(transparent)]
    Layout(#[from] crate::layout::InvalidName),
    /// The blocking unpack task panicked or was cancelled.
    #[error("package pipeline task failed: {0}")]
    Task(String),
}

/// Where an entry is in its archive, for errors that name two entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPosition {
    /// 1-based index among the archive's members (a tar member's extension headers belong to it).
    pub index: u64,
    /// Byte offset of its first header (tar: in the decompressed stream; zip: of its local header), when known.
    pub offset: Option<u64>,
}

impl std::fmt::Display for EntryPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}", self.index)?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        Ok(())
    }
}

/// Bytes of an archived name (or a parser's message) quoted in an error: enough to recognise it, short enough that
/// every error stays a line even when an archive names a path of PATH_MAX bytes (and a report stays small).
pub(crate) const SHOWN_NAME_BYTES: usize = 256;

/// An archived name as shown in errors: lossy UTF-8, clipped to [`SHOWN_NAME_BYTES`] with a marker giving the whole
/// length. Reads at most [`SHOWN_NAME_BYTES`] bytes of `raw`, whatever its length.
pub(crate) fn shown(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(SHOWN_NAME_BYTES)];
    let text = one_line(&String::from_utf8_lossy(head), SHOWN_NAME_BYTES);
    if head.len() == raw.len() {
        text
    } else {
        format!("{text}…[{} bytes in all]", raw.len())
    }
}

/// `text` from an archive (a name, or a parser's message quoting header bytes) as it may appear in an error: clipped
/// to `max` bytes like every reported text ([`rollcage_proto::clip::clip_head`]: control characters shown as
/// `U+FFFD`), and on one line: a newline, which `clip_head` keeps for hook output, is shown as `U+FFFD` too, so an
/// archive cannot add lines to a log or a report.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    rollcage_proto::clip::clip_head(&text.replace('\n', "\u{FFFD}"), max)
}

fn at_entry(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|e| format!(" at entry `{e}`"))
        .unwrap_or_default()
}

impl PackageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
