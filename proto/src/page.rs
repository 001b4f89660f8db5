//! Paging of the coordinator's list routes (`GET /v1/applications`, `…/groups`, `/v1/deployments`,
//! `/v1/instances`): the query every one takes ([`PageQuery`]: `limit`, `cursor`), the page every one answers
//! ([`Page`]: `items`, `next_cursor`) and the page-size bounds. A list that grows with use is never answered whole.
//!
//! A cursor is opaque to clients: pass the `next_cursor` of one page to get the next; `null` means the list is
//! done. The coordinator makes it from the sort key of the page's last item (a name for lists by name, a sequence
//! number for deployments, newest first), so a page boundary stays put when items are added elsewhere in the list.

use serde::{Deserialize, Serialize};

/// Items in a page when the request gives no `limit`: enough for a screen of the dashboard or a CLI listing in one
/// call, small enough that a page of deployment summaries stays in the tens of kilobytes.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The largest `limit` accepted: bounds the work and the answer of one request (a page of the largest items, groups
/// with load-balancer settings, stays around a megabyte) whatever the client asks.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The query of a list route: `?limit=N&cursor=C`, both optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items wanted, 1 to [`MAX_PAGE_SIZE`]; [`DEFAULT_PAGE_SIZE`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where to go on: the `next_cursor` of the previous page; the first page when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A `limit` outside 1 to [`MAX_PAGE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidLimit(pub u32);

impl std::fmt::Display for InvalidLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query parameter `limit`: {} is out of range: expected 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})",
            self.0
        )
    }
}

impl std::error::Error for InvalidLimit {}

impl PageQuery {
    /// The page size asked for, checked against the bounds.
    pub fn page_size(&self) -> Result<usize, InvalidLimit> {
        match self.limit {
            None => Ok(DEFAULT_PAGE_SIZE as usize),
            Some(n @ 1..=MAX_PAGE_SIZE) => Ok(n as usize),
            Some(n) => Err(InvalidLimit(n)),
        }
    }
}

/// One page of a list: at most `limit` items, and the cursor of the next page (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `None` when there are no more items.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `size + 1` items read in order (one more than asked tells whether another page
    /// follows): keeps the first `size`, and makes the next cursor from the last kept item with `key`.
    pub fn from_overfetch(mut rows: Vec<T>, size: usize, key: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > size;
        rows.truncate(size);
        let next_cursor = if more { rows.last().map(key) } else { None };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_size_is_bounded_and_defaults() {
        let q = |limit| PageQuery {
            limit,
            cursor: None,
        };
        assert_eq!(q(None).page_size(), Ok(DEFAULT_PAGE_SIZE as usize));
        assert_eq!(q(Some(1)).page_size(), Ok(1));
        assert_eq!(
            q(Some(MAX_PAGE_SIZE)).page_size(),
            Ok(MAX_PAGE_SIZE as usize)
        );
        assert_eq!(q(Some(0)).page_size(), Err(InvalidLimit(0)));
        assert_eq!(
            q(Some(MAX_PAGE_SIZE + 1)).page_size(),
            Err(InvalidLimit(MAX_PAGE_SIZE + 1))
        );
    }

    #[test]
    fn an_overfetched_read_says_whether_a_next_page_exists() {
        let p = Page::from_overfetch(vec![1, 2, 3], 2, i32::to_string);
        assert_eq!(p.items, [1, 2]);
        assert_eq!(p.next_cursor.as_deref(), Some("2"));
        let last = Page::from_overfetch(vec![1, 2], 2, i32::to_string);
        assert_eq!(last.items, [1, 2]);
        assert_eq!(last.next_cursor, None);
        let empty = Page::from_overfetch(Vec::<i32>::new(), 2, i32::to_string);
        assert_eq!(empty.next_cursor, None);
    }
}
