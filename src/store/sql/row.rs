//! Reading a row: the one place where a missing, mistyped or malformed column becomes
//! [`StoreError::Corrupt`], so the queries read their columns without repeating it.

use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::Row as _;
use sqlx::{Any, Decode, Type};

use crate::crypto::token::Digest;
use crate::store::StoreError;

pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A row of any query, read by column name; with a prefix, `get("id")` reads `a_id` (a join
/// that returns two tables' columns aliases one table's with a prefix).
#[derive(Clone, Copy)]
pub(super) struct Row<'r> {
    row: &'r AnyRow,
    prefix: &'static str,
}

impl<'r> Row<'r> {
    pub(super) fn new(row: &'r AnyRow) -> Row<'r> {
        Row { row, prefix: "" }
    }

    pub(super) fn prefixed(row: &'r AnyRow, prefix: &'static str) -> Row<'r> {
        Row { row, prefix }
    }

    fn column(self, name: &str) -> std::borrow::Cow<'_, str> {
        if self.prefix.is_empty() {
            std::borrow::Cow::Borrowed(name)
        } else {
            std::borrow::Cow::Owned(format!("{}{name}", self.prefix))
        }
    }

    /// The column as `T` (`Option<T>` for a nullable one).
    pub(super) fn get<T>(self, column: &str) -> Result<T, StoreError>
    where
        T: Decode<'r, Any> + Type<Any>,
    {
        self.row.try_get(&*self.column(column)).map_err(corrupt)
    }

    /// A flag: `boolean` on Postgres, a 0/1 integer on SQLite (see the migrations).
    pub(super) fn flag(self, column: &str) -> Result<bool, StoreError> {
        let column = self.column(column);
        self.row
            .try_get::<bool, _>(&*column)
            .or_else(|_| self.row.try_get::<i64, _>(&*column).map(|v| v != 0))
            .map_err(corrupt)
    }

    /// A nullable SHA-256 digest, stored as 32 bytes.
    pub(super) fn opt_digest(self, column: &str) -> Result<Option<Digest>, StoreError> {
        let bytes: Option<Vec<u8>> = self.get(column)?;
        bytes
            .map(|b| Digest::from_slice(&b).ok_or_else(|| corrupt(format!("{column} length"))))
            .transpose()
    }

    pub(super) fn digest(self, column: &str) -> Result<Digest, StoreError> {
        self.opt_digest(column)?
            .ok_or_else(|| corrupt(format!("{column} is null")))
    }

    /// A value stored as JSON text (claims, audit details).
    pub(super) fn json<T: DeserializeOwned>(self, column: &str) -> Result<T, StoreError> {
        let text: String = self.get(column)?;
        serde_json::from_str(&text).map_err(corrupt)
    }

    /// A nullable value stored as JSON text.
    pub(super) fn opt_json<T: DeserializeOwned>(
        self,
        column: &str,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = self.get(column)?;
        text.map(|t| serde_json::from_str(&t).map_err(corrupt))
            .transpose()
    }

    /// A list stored as JSON text.
    pub(super) fn json_list(self, column: &str) -> Result<Vec<String>, StoreError> {
        self.json(column)
    }

    /// A nullable list stored as JSON text; null reads as empty.
    pub(super) fn opt_json_list(self, column: &str) -> Result<Vec<String>, StoreError> {
        let text: Option<String> = self.get(column)?;
        match text {
            None => Ok(Vec::new()),
            Some(t) => serde_json::from_str(&t).map_err(corrupt),
        }
    }

    /// A name stored as text and parsed into its enum; `what` names it in the error.
    pub(super) fn parsed<T>(
        self,
        column: &str,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let text: String = self.get(column)?;
        parse(&text).ok_or_else(|| corrupt(format!("{what} {text}")))
    }
}
