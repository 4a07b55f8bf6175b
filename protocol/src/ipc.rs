//! Pre-validation of Arrow IPC messages taken from the network.
//!
//! arrow's readers trust lengths found in the bytes: they allocate metadata and body buffers
//! of the declared size and slice buffers with `assert!`s. So before any bytes reach arrow we
//! walk the IPC framing ourselves and check every length and offset against the bytes present.
//!
//! Only the modern encapsulation is accepted — `0xFFFFFFFF` continuation marker, `i32`
//! little-endian metadata length, flatbuffer `Message`, body — because that is all our encoder
//! writes; accepting the pre-0.15 form would only widen what a hostile peer can send.

use arrow_ipc::{Endianness, Message, MessageHeader, MetadataVersion, RecordBatch};
use arrow_schema::{DataType, Field, IntervalUnit, Schema, TimeUnit};

use crate::ProtocolError;

const CONTINUATION: [u8; 4] = [0xFF; 4];
const PREFIX_LEN: usize = 8;

/// Longest `FixedSizeBinary` width we accept; keeps `len * width` far from overflow.
const MAX_FIXED_WIDTH: i32 = 1 << 20;
/// Most elements per `FixedSizeList` entry, same reason.
const MAX_FIXED_LIST: i32 = 1 << 16;

fn ipc_err(msg: String) -> ProtocolError {
    ProtocolError::IpcFraming(msg)
}

/// A verified IPC message: its flatbuffer header and where its body lies in the input.
pub(crate) struct Parsed<'a> {
    pub message: Message<'a>,
    pub body_start: usize,
    pub body_len: usize,
}

/// Checks the encapsulation of one IPC message that must span exactly `bytes`.
pub(crate) fn parse_message<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<Parsed<'a>, ProtocolError> {
    let (prefix, rest) =
        bytes
            .split_first_chunk::<PREFIX_LEN>()
            .ok_or(ProtocolError::Truncated {
                what,
                need: PREFIX_LEN,
                have: bytes.len(),
            })?;
    let [m0, m1, m2, m3, l0, l1, l2, l3] = *prefix;
    let marker = [m0, m1, m2, m3];
    if marker != CONTINUATION {
        return Err(ipc_err(format!(
            "{what}: missing continuation marker (got {marker:02x?})"
        )));
    }
    let meta_len = i32::from_le_bytes([l0, l1, l2, l3]);
    let meta_len = usize::try_from(meta_len)
        .ok()
        .filter(|l| *l > 0)
        .ok_or_else(|| ipc_err(format!("{what}: invalid metadata length {meta_len}")))?;
    let (meta, body) = rest
        .split_at_checked(meta_len)
        .ok_or(ProtocolError::Truncated {
            what,
            need: PREFIX_LEN.saturating_add(meta_len),
            have: bytes.len(),
        })?;
    let message = arrow_ipc::root_as_message(meta)
        .map_err(|e| ipc_err(format!("{what}: invalid flatbuffer metadata: {e}")))?;
    let version = message.version();
    if version != MetadataVersion::V4 && version != MetadataVersion::V5 {
        return Err(ipc_err(format!(
            "{what}: unsupported IPC metadata version {}",
            version.0
        )));
    }
    let declared = message.bodyLength();
    if usize::try_from(declared).ok() != Some(body.len()) {
        return Err(ipc_err(format!(
            "{what}: body length {declared} does not match the {} bytes present",
            body.len()
        )));
    }
    Ok(Parsed {
        message,
        body_start: PREFIX_LEN + meta_len,
        body_len: body.len(),
    })
}

/// Decodes a schema message and checks it only uses types we support.
pub(crate) fn decode_schema(bytes: &[u8]) -> Result<Schema, ProtocolError> {
    let parsed = parse_message(bytes, "IPC schema message")?;
    if parsed.body_len != 0 {
        return Err(ipc_err("schema message must not have a body".into()));
    }
    let msg = parsed.message;
    let fb = msg.header_as_schema().ok_or_else(|| {
        ipc_err(format!(
            "expected a Schema message, got header type {}",
            msg.header_type().0
        ))
    })?;
    if fb.endianness() != Endianness::Little {
        return Err(ipc_err("big-endian data is not supported".into()));
    }
    let schema = arrow_ipc::convert::try_fb_to_schema(fb).map_err(ProtocolError::Ipc)?;
    check_schema(&schema)?;
    Ok(schema)
}

/// Rejects types the codec does not carry: dictionaries (we never send dictionary batches),
/// unions, run-end encoded, list views and maps (arrow's IPC reader has `assert!`/slicing
/// paths for some of them that malformed input can reach), and parameters that would make
/// length arithmetic overflow.
pub(crate) fn check_schema(schema: &Schema) -> Result<(), ProtocolError> {
    schema
        .fields()
        .iter()
        .try_for_each(|f| check_field(f))
        .map_err(ProtocolError::SchemaMismatch)
}

fn check_field(field: &Field) -> Result<(), String> {
    check_type(field.data_type()).map_err(|e| format!("column {:?}: {e}", field.name()))
}

fn check_type(dt: &DataType) -> Result<(), String> {
    use DataType::*;
    let ok = match dt {
        Null
        | Boolean
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float16
        | Float32
        | Float64
        | Date32
        | Date64
        | Timestamp(_, _)
        | Duration(_)
        | Utf8
        | LargeUtf8
        | Binary
        | LargeBinary
        | Utf8View
        | BinaryView => true,
        Time32(u) => matches!(u, TimeUnit::Second | TimeUnit::Millisecond),
        Time64(u) => matches!(u, TimeUnit::Microsecond | TimeUnit::Nanosecond),
        Interval(u) => matches!(
            u,
            IntervalUnit::YearMonth | IntervalUnit::DayTime | IntervalUnit::MonthDayNano
        ),
        Decimal32(p, s) => decimal_ok(*p, *s, arrow_schema::DECIMAL32_MAX_PRECISION),
        Decimal64(p, s) => decimal_ok(*p, *s, arrow_schema::DECIMAL64_MAX_PRECISION),
        Decimal128(p, s) => decimal_ok(*p, *s, arrow_schema::DECIMAL128_MAX_PRECISION),
        Decimal256(p, s) => decimal_ok(*p, *s, arrow_schema::DECIMAL256_MAX_PRECISION),
        FixedSizeBinary(w) => (1..=MAX_FIXED_WIDTH).contains(w),
        List(f) | LargeList(f) => return check_field(f),
        FixedSizeList(f, n) => {
            if !(1..=MAX_FIXED_LIST).contains(n) {
                return Err(format!("unsupported fixed list size {n}"));
            }
            return check_field(f);
        }
        Struct(fields) => return fields.iter().try_for_each(|f| check_field(f)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unsupported data type {dt}"))
    }
}

fn decimal_ok(p: u8, s: i8, max: u8) -> bool {
    (1..=max).contains(&p) && i16::from(s).unsigned_abs() <= u16::from(p)
}

/// Checks a record batch message's metadata against the stream schema and the body it
/// describes, so that arrow's reader — which slices with `assert!`s, sizes arrays from these
/// numbers and views buffers as typed slices (panicking when a length is not a multiple of the
/// element size) — only sees consistent, in-bounds values. `rows` is our frame header's count.
pub(crate) fn check_record_batch<'a>(
    msg: &Message<'a>,
    schema: &Schema,
    body_len: usize,
    rows: u32,
) -> Result<RecordBatch<'a>, ProtocolError> {
    if msg.header_type() == MessageHeader::DictionaryBatch {
        return Err(ipc_err("dictionary batches are not supported".into()));
    }
    let rb = msg.header_as_record_batch().ok_or_else(|| {
        ipc_err(format!(
            "expected a RecordBatch message, got header type {}",
            msg.header_type().0
        ))
    })?;
    if rb.length() != i64::from(rows) {
        return Err(ProtocolError::RowCountMismatch {
            declared: rows,
            actual: usize::try_from(rb.length()).unwrap_or(0),
        });
    }
    if rb.compression().is_some() {
        return Err(ipc_err(
            "IPC-level buffer compression is not supported".into(),
        ));
    }
    let body = body_len as u64;
    let mut walker = Layout {
        nodes: rb.nodes().into_iter().flatten(),
        buffers: rb.buffers().into_iter().flatten(),
        variadic: rb.variadicBufferCounts().into_iter().flatten(),
        body,
        // A node longer than this cannot be backed by the body (every element needs at least
        // a bit), so rejecting it keeps arrow's `len * width` arithmetic far from overflow.
        max_node: u64::from(rows).saturating_add(body.saturating_mul(8)),
    };
    for field in schema.fields() {
        walker
            .field(field, Some(u64::from(rows)))
            .map_err(|e| ipc_err(format!("column {:?}: {e}", field.name())))?;
    }
    if walker.nodes.next().is_some()
        || walker.buffers.next().is_some()
        || walker.variadic.next().is_some()
    {
        return Err(ipc_err(
            "record batch has more field nodes or buffers than the schema needs".into(),
        ));
    }
    Ok(rb)
}

/// Walks field nodes and buffers in the order arrow's reader consumes them (depth-first, per
/// the IPC spec), checking each against the type it will be read as.
struct Layout<N, B, V> {
    nodes: N,
    buffers: B,
    variadic: V,
    body: u64,
    max_node: u64,
}

impl<'a, N, B, V> Layout<N, B, V>
where
    N: Iterator<Item = &'a arrow_ipc::FieldNode>,
    B: Iterator<Item = &'a arrow_ipc::Buffer>,
    V: Iterator<Item = i64>,
{
    /// `expected_len`: top-level columns must have exactly the batch's row count.
    fn field(&mut self, field: &Field, expected_len: Option<u64>) -> Result<(), String> {
        use DataType::*;
        let node = self.nodes.next().ok_or("missing field node")?;
        let len = u64::try_from(node.length())
            .ok()
            .filter(|l| *l <= self.max_node && expected_len.is_none_or(|e| e == *l))
            .ok_or_else(|| format!("invalid length {}", node.length()))?;
        if !u64::try_from(node.null_count()).is_ok_and(|c| c <= len) {
            return Err(format!("invalid null count {}", node.null_count()));
        }
        let dt = field.data_type();
        match dt {
            Null => {}
            Boolean | FixedSizeBinary(_) => {
                self.buffer(1)?; // validity
                self.buffer(1)?;
            }
            Utf8 | Binary => {
                self.buffer(1)?;
                self.buffer(4)?; // i32 offsets
                self.buffer(1)?;
            }
            LargeUtf8 | LargeBinary => {
                self.buffer(1)?;
                self.buffer(8)?; // i64 offsets
                self.buffer(1)?;
            }
            Utf8View | BinaryView => {
                self.buffer(1)?;
                self.buffer(16)?; // u128 views
                let count = self
                    .variadic
                    .next()
                    .ok_or("missing variadic buffer count")?;
                let count =
                    u64::try_from(count).map_err(|_| format!("invalid variadic count {count}"))?;
                for _ in 0..count {
                    // Each iteration consumes a buffer or errors, so this loop is bounded by
                    // the buffers actually present in the message.
                    self.buffer(1)?;
                }
            }
            List(child) => {
                self.buffer(1)?;
                self.buffer(4)?;
                self.field(child, None)?;
            }
            LargeList(child) => {
                self.buffer(1)?;
                self.buffer(8)?;
                self.field(child, None)?;
            }
            FixedSizeList(child, _) => {
                self.buffer(1)?;
                self.field(child, None)?;
            }
            Struct(children) => {
                self.buffer(1)?;
                for c in children {
                    self.field(c, Some(len))?;
                }
            }
            other => match other.primitive_width() {
                Some(w) => {
                    self.buffer(1)?;
                    self.buffer(w as u64)?;
                }
                // check_schema admits no other types.
                None => return Err(format!("unsupported data type {other}")),
            },
        }
        Ok(())
    }

    /// Next buffer: inside the body, and a whole number of `elem`-byte elements.
    fn buffer(&mut self, elem: u64) -> Result<(), String> {
        let b = self.buffers.next().ok_or("missing buffer")?;
        let ok = u64::try_from(b.offset())
            .ok()
            .zip(u64::try_from(b.length()).ok())
            .is_some_and(|(o, l)| {
                o.checked_add(l).is_some_and(|end| end <= self.body) && l % elem == 0
            });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "buffer at offset {} with length {} does not fit the {}-byte body in {elem}-byte units",
                b.offset(),
                b.length(),
                self.body
            ))
        }
    }
}
