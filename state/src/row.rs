//! Reading columns out of a row, with every failure a
//! [`StateError::Corrupt`] naming the table and column.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::StateError;

/// A row of `table`, read column by column.
pub(crate) struct Cols<'r> {
    row: &'r AnyRow,
    table: &'static str,
}

impl<'r> Cols<'r> {
    pub(crate) fn new(row: &'r AnyRow, table: &'static str) -> Self {
        Cols { row, table }
    }

    /// A `Corrupt` error about `column`.
    pub(crate) fn corrupt(&self, column: &str, message: impl Into<String>) -> StateError {
        StateError::Corrupt {
            what: format!("column {}.{column}", self.table),
            message: message.into(),
        }
    }

    fn get<T>(&self, column: &str) -> Result<T, StateError>
    where
        T: for<'a> sqlx::Decode<'a, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.row
            .try_get::<T, _>(column)
            .map_err(|e| self.corrupt(column, e.to_string()))
    }

    pub(crate) fn i64(&self, column: &str) -> Result<i64, StateError> {
        self.get(column)
    }

    pub(crate) fn opt_i64(&self, column: &str) -> Result<Option<i64>, StateError> {
        self.get(column)
    }

    pub(crate) fn text(&self, column: &str) -> Result<String, StateError> {
        self.get(column)
    }

    pub(crate) fn opt_text(&self, column: &str) -> Result<Option<String>, StateError> {
        self.get(column)
    }

    pub(crate) fn u64(&self, column: &str) -> Result<u64, StateError> {
        let value = self.i64(column)?;
        u64::try_from(value).map_err(|_| self.corrupt(column, format!("negative value {value}")))
    }

    pub(crate) fn opt_u64(&self, column: &str) -> Result<Option<u64>, StateError> {
        match self.opt_i64(column)? {
            None => Ok(None),
            Some(value) => u64::try_from(value)
                .map(Some)
                .map_err(|_| self.corrupt(column, format!("negative value {value}"))),
        }
    }

    pub(crate) fn u32(&self, column: &str) -> Result<u32, StateError> {
        let value = self.i64(column)?;
        u32::try_from(value)
            .map_err(|_| self.corrupt(column, format!("value {value} is out of range")))
    }
}
