//! Resource limits a decoder enforces on untrusted input.
//!
//! Every length read from the wire is checked against one of these before memory is reserved
//! for it, so a peer cannot make us allocate more than these bounds.

/// Per-connection decoding limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest control-stream frame payload (JSON messages, stream headers).
    pub max_control_frame: u32,
    /// Largest data-stream frame payload (a compressed or raw batch).
    pub max_data_frame: u32,
    /// Largest uncompressed Arrow IPC body of one batch.
    pub max_decompressed_batch: u32,
    /// Most rows in one batch.
    pub max_batch_rows: u32,
}

impl Limits {
    /// Default control frame limit: 1 MiB.
    pub const DEFAULT_MAX_CONTROL_FRAME: u32 = 1 << 20;
    /// Default data frame limit: 64 MiB.
    pub const DEFAULT_MAX_DATA_FRAME: u32 = 64 << 20;
    /// Default decompressed batch limit: 256 MiB.
    pub const DEFAULT_MAX_DECOMPRESSED_BATCH: u32 = 256 << 20;
    /// Default row limit per batch.
    pub const DEFAULT_MAX_BATCH_ROWS: u32 = 1_048_576;

    /// The defaults, usable in `const` contexts.
    pub const DEFAULT: Limits = Limits {
        max_control_frame: Self::DEFAULT_MAX_CONTROL_FRAME,
        max_data_frame: Self::DEFAULT_MAX_DATA_FRAME,
        max_decompressed_batch: Self::DEFAULT_MAX_DECOMPRESSED_BATCH,
        max_batch_rows: Self::DEFAULT_MAX_BATCH_ROWS,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
