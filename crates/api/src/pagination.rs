//! Offset pagination as the list endpoints answer it (spec §1.4): `page_token` is an
//! opaque string (here: the offset of the next page), `limit` is clamped, and
//! `pagination.next_page_token` is present only while a full page came back.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Default page of executions; the largest is [`EXECUTION_PAGE_MAX`].
pub const EXECUTION_PAGE: i64 = 50;
/// Largest page of executions.
pub const EXECUTION_PAGE_MAX: i64 = 100;

/// One requested page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
}

impl Page {
    /// The page a request asks for: `limit` clamped to `1..=max` (`default` when absent
    /// or not positive), the offset from a token this server issued.
    pub fn from_query(
        page_token: Option<&str>,
        limit: Option<i64>,
        default: i64,
        max: i64,
    ) -> ApiResult<Page> {
        let limit = match limit {
            Some(n) if n > 0 => n.min(max),
            _ => default,
        };
        let offset = match page_token.map(str::trim).filter(|t| !t.is_empty()) {
            None => 0,
            Some(token) => token
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request("page_token is not a token this server issued")
                })?,
        };
        Ok(Page { offset, limit })
    }

    /// `next_page_token` after `returned` rows of this page: the next offset while the page
    /// was full, else `null`.
    pub fn next_token(&self, returned: usize) -> Value {
        if returned as i64 == self.limit {
            Value::String((self.offset + self.limit).to_string())
        } else {
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_clamped_and_tokens_round_trip() {
        let first = Page::from_query(None, Some(500), 50, 100).unwrap();
        assert_eq!(
            first,
            Page {
                offset: 0,
                limit: 100
            }
        );
        assert_eq!(first.next_token(100), Value::String("100".into()));
        assert_eq!(first.next_token(7), Value::Null);
        let next = Page::from_query(Some("100"), Some(0), 50, 100).unwrap();
        assert_eq!(
            next,
            Page {
                offset: 100,
                limit: 50
            }
        );
        for bad in ["-1", "abc"] {
            let error = Page::from_query(Some(bad), None, 50, 100).unwrap_err();
            assert!(error.to_string().contains("page_token"), "{error}");
        }
    }
}
