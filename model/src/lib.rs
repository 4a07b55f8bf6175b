//! What flows through Ferry, in one model for batch, whole-database and (next) change
//! streams.
//!
//! * [`ReadSpec`]: what a job asks of a reader (DataX's parameters).
//! * [`Split`]: one slice of a read, run by one task. It knows its table ([`TableRef`]), its
//!   bounds, the order the source reads it in ([`SplitOrder`]) and, when resumed, the
//!   [`Position`] to resume after.
//! * [`TableSchema`]: what a table is beyond its column types (keys, indexes, foreign keys,
//!   defaults, identity), described by a source and rendered as DDL by a target.
//! * [`Changes`]: values a read changed on purpose (a zero date read as NULL), counted per
//!   column for the job summary.
//! * [`VerifyAsk`]: `ferry verify`'s request to fingerprint a split instead of sending it.
//! * [`Position`]: a point in a source's order, supplied by the source (today the values of
//!   a unique key of the last row committed: integer, decimal, string, binary or any tuple
//!   of them). The engine stores and returns it; only the source compares positions.
//!
//! These types cross the tunnel as typed fields of control messages, so everything here
//! treats its input as untrusted: deserialising validates (a decimal is digits, bytes are
//! hex), and nothing here builds SQL. Rendering a position as SQL is each connector's job.

#![forbid(unsafe_code)]

mod changes;
mod position;
mod read;
mod schema;
mod split;
mod verify;

pub use changes::{Changes, ChangesError, MAX_CHANGE_ENTRIES, MAX_CHANGE_TEXT};
pub use position::{KeyValue, Position, PositionError, MAX_POSITION_VALUES, MAX_TEXT_KEY_LEN};
pub use read::{ReadSpec, DEFAULT_FETCH_SIZE};
pub use schema::{
    ColumnDef, ColumnDefault, FkAction, ForeignKey, Identity, Index, IndexColumn, SchemaError,
    TableSchema, MAX_IDENT_LEN, MAX_KEY_COLUMNS, MAX_SCHEMA_ITEMS, MAX_TEXT_LEN,
};
pub use split::{int_splits, Split, SplitBounds, SplitOrder, TableRef};
pub use verify::{
    PgHash, Scheme, TextAs, TextKind, VerifyAsk, VerifyPass, MAX_BUCKETS, MAX_COPY_KEYS,
    MAX_ROW_BUCKETS, MAX_VALUE_KEYS, POSTGRES_HASH_CAPABILITY,
};
