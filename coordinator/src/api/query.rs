//! Query strings: the extractor whose rejections use the API's error shape ([`Query`]; axum's own answers
//! `text/plain`), and the reading of a list route's page query into checked bounds ([`PageBounds`]; the query and
//! page types are `rollcage_proto::page`'s).

use super::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rollcage_proto::page::PageQuery;

/// A query string decoded into `T`; a bad one (an unknown parameter, a number that is not one) is a 400 in the API's
/// error shape saying what was wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(rej) => Err(ApiError::Invalid(format!(
                "invalid query string: {}",
                rollcage_proto::clip::clip_head(&rej.body_text(), 300)
            ))),
        }
    }
}

/// A page query, checked: how many items to read and where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageBounds {
    /// Items in the page.
    pub size: usize,
    /// The cursor given (`None` for the first page).
    pub cursor: Option<String>,
}

impl PageBounds {
    /// Check the limit (400 outside its bounds) and take the cursor as given.
    pub fn of(q: &PageQuery) -> Result<Self, ApiError> {
        let size = q
            .page_size()
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        Ok(Self {
            size,
            cursor: q.cursor.clone(),
        })
    }

    /// Rows to read: one more than the page holds, which tells whether another page follows.
    pub fn overfetch(&self) -> usize {
        self.size + 1
    }

    /// The cursor as a deployment sequence number (the cursor of `GET /v1/deployments`); 400 if it is not one.
    pub fn seq_cursor(&self) -> Result<Option<i64>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::Invalid(format!(
                        "query parameter `cursor`: `{}` is not a cursor of this list: pass the `next_cursor` of \
                         the previous page",
                        rollcage_proto::clip::clip_head(c, 80)
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_refuse_a_limit_out_of_range_and_a_cursor_that_is_not_a_sequence_number() {
        let q = |limit: Option<u32>, cursor: Option<&str>| PageQuery {
            limit,
            cursor: cursor.map(str::to_owned),
        };
        assert!(matches!(
            PageBounds::of(&q(Some(0), None)),
            Err(ApiError::Invalid(_))
        ));
        assert!(matches!(
            PageBounds::of(&q(Some(1001), None)),
            Err(ApiError::Invalid(_))
        ));
        let b = PageBounds::of(&q(None, Some("17")));
        assert!(matches!(b.as_ref().map(PageBounds::overfetch), Ok(101)));
        assert!(matches!(b.map(|b| b.seq_cursor()), Ok(Ok(Some(17)))));
        for bad in ["x", "-3", "0", "99999999999999999999"] {
            let b = PageBounds::of(&q(None, Some(bad)));
            assert!(
                matches!(b.map(|b| b.seq_cursor()), Ok(Err(ApiError::Invalid(_)))),
                "{bad}"
            );
        }
    }
}
