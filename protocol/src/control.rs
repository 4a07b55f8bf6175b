//! Control-stream messages: handshake, heartbeats, errors, orderly close.
//!
//! They travel as [`FrameKind::Control`] frames with a JSON payload, internally tagged by
//! `"type"`. JSON keeps the control plane debuggable and lets a newer peer add fields: unknown
//! fields are ignored, unknown message types are an error.

use arrow_schema::Schema;
use bytes::Bytes;
use ferry_model::{ReadSpec, Split, TableSchema, VerifyAsk};
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, FrameKind};
use crate::version::VersionRange;
use crate::ProtocolError;

/// Longest identifier-like string (agent id, software, capability, group), in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Most capabilities in a `Hello`.
pub const MAX_CAPABILITIES: usize = 64;
/// Longest free-text field (reject/error message, goodbye reason), in bytes.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Most tables (and most not-migrated objects) in a `TableList`.
pub const MAX_TABLES: usize = 10_000;
/// Most columns in a read or a schema (PostgreSQL allows 1,600, MySQL 4,096).
pub const MAX_COLUMNS: usize = 4096;
/// Most splits in one plan; an agent caps its own plans lower.
pub const MAX_SPLITS: usize = 65_536;
/// Most data sources in a `Catalog`.
pub const MAX_SOURCES: usize = 1024;

/// A data source an agent offers. Only its name and connector kind: the
/// URL and credentials never leave the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub name: String,
    pub kind: String,
}

/// A message on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// First message on the control stream, agent -> broker. `agent_id` is a claim the broker
    /// checks against the client certificate; identity always comes from the certificate.
    Hello {
        /// Protocol versions the agent speaks.
        versions: VersionRange,
        /// Claimed agent id.
        agent_id: String,
        /// Agent software name/version, for logs.
        software: String,
        /// Optional features the agent supports.
        capabilities: Vec<String>,
    },
    /// Broker accepts the session.
    Welcome {
        /// Negotiated protocol version.
        version: u16,
        /// Broker-assigned session id.
        session_id: u64,
        /// Agent id as established from the certificate.
        agent_id: String,
        /// Group the agent belongs to.
        group: String,
        /// Interval at which the agent must send heartbeats.
        heartbeat_secs: u32,
        /// Milliseconds over which the agent spreads (full jitter) its
        /// reconnect when this session is lost: the broker sizes it to the
        /// number of agents it serves. 0 (an older broker): the agent's own
        /// backoff alone.
        #[serde(default)]
        reconnect_spread_ms: u32,
    },
    /// Broker refuses the session; the connection is closed afterwards.
    Reject {
        /// Machine-readable reason.
        code: RejectCode,
        /// Human-readable detail.
        message: String,
    },
    /// Liveness probe.
    Heartbeat {
        /// Sequence number echoed by the ack.
        seq: u64,
        /// Sender's wall clock, for RTT/clock-skew estimates.
        sent_unix_ms: u64,
    },
    /// Answer to a heartbeat, echoing its fields.
    HeartbeatAck {
        /// Echoed sequence number.
        seq: u64,
        /// Echoed send time.
        sent_unix_ms: u64,
        /// The current reconnect spread, as in `Welcome` (the number of
        /// agents changes while a session lasts).
        #[serde(default)]
        reconnect_spread_ms: u32,
    },
    /// A request failed; deliberately generic so any request can be answered with it.
    Error {
        /// Machine-readable category.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// Orderly close with a reason (e.g. superseded by a newer session of the same agent).
    Goodbye {
        /// Why the session ends.
        reason: String,
    },
    /// Agent -> broker, after `Welcome`: the data sources it can read.
    Catalog { sources: Vec<SourceInfo> },
    /// Broker -> agent: find the schema of a read and cut it into splits.
    PlanRequest {
        /// Echoed by the answer.
        request_id: u64,
        /// Name of one of the agent's data sources.
        datasource: String,
        /// The read.
        spec: Box<ReadSpec>,
        /// The job's connector options (no credentials).
        #[serde(default)]
        options: Options,
        /// Upper bound on the number of splits wanted.
        max_splits: u32,
    },
    /// Agent -> broker: the plan.
    PlanReply {
        request_id: u64,
        /// The Arrow schema of the read.
        schema: Schema,
        /// The splits, each knowing its table and order.
        splits: Vec<Split>,
        /// Rows the read will produce, from table statistics, if known.
        estimated_rows: Option<u64>,
        /// The table's keys, indexes, defaults and identity, for the read's columns
        /// (none for a query or a file).
        #[serde(default)]
        table: Option<Box<TableSchema>>,
    },
    /// Broker -> agent: list the tables of a data source, for a whole-database job. The
    /// agent answers only with tables its policy lets jobs read (`TableList`), or with
    /// `PlanFailed`.
    ListTables { request_id: u64, datasource: String },
    /// Agent -> broker: the tables of a data source its policy allows, and what a
    /// whole-database job would not migrate (views, routines).
    TableList {
        request_id: u64,
        tables: Vec<String>,
        #[serde(default)]
        not_migrated: Vec<String>,
        /// Each table's estimated rows, in `tables`' order (or none): which to start first.
        #[serde(default)]
        rows: Vec<u64>,
    },
    /// Agent -> broker: a plan request failed (unknown data source, bad
    /// spec, database error).
    PlanFailed { request_id: u64, message: String },
    /// Broker -> agent: read one split and send it on a new data stream
    /// whose header carries `task_id`.
    TaskAssign {
        task_id: String,
        datasource: String,
        /// The read, as planned.
        spec: Box<ReadSpec>,
        /// The job's connector options (no credentials).
        #[serde(default)]
        options: Options,
        /// The split, with the position to resume after when it is resumed.
        split: Box<Split>,
        /// How to compress batches.
        compression: crate::data::Compression,
        /// `ferry verify`: fingerprint the split and send the result batches of the ask's
        /// pass (`ferry_fingerprint::result_schema`) instead of its rows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verify: Option<Box<VerifyAsk>>,
    },
    /// Broker -> agent: stream the committed changes of `tables` on a new data stream whose
    /// header carries `task_id` (see [`crate::changes`]), until cancelled. The agent checks
    /// every table against its policy; the slot and publication come from its own config.
    StreamAssign {
        task_id: String,
        datasource: String,
        /// The tables, in the order the stream's table indexes follow.
        tables: Vec<ReadSpec>,
        /// The job's connector options (no credentials).
        #[serde(default)]
        options: Options,
        /// Resume after this source position (what the target committed last); none: from
        /// where the source's slot stands.
        #[serde(default)]
        start: Option<ferry_model::Position>,
        /// How to compress batches.
        compression: crate::data::Compression,
    },
    /// Broker -> agent: stop a task (job cancelled or failed elsewhere).
    TaskCancel { task_id: String, reason: String },
    /// Agent -> broker: a task could not run or its read failed.
    TaskFailed {
        task_id: String,
        message: String,
        /// The failure may pass (the source went away: a server restarting, a network
        /// fault), so a continuous task may be started again; absent from older agents.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retryable: bool,
    },
    /// Agent -> broker: how far a change stream task is behind its source: bytes of the
    /// source's log (WAL, binlog) after the position the broker last acknowledged, measured
    /// at most once a second. On the control stream so that it arrives while the task's
    /// data stream is held up. Shown to operators; nothing acts on it.
    StreamProgress { task_id: String, behind_bytes: u64 },
}

/// A job's connector options: a JSON object of option names to values.
pub type Options = serde_json::Map<String, serde_json::Value>;

/// Why a broker refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// No common protocol version.
    UnsupportedVersion,
    /// Claimed agent id does not match the certificate.
    IdentityMismatch,
    /// The certificate or agent has been revoked.
    Revoked,
    /// The first control message was not `Hello`.
    NotFirstMessage,
    /// The handshake could not be decoded.
    Malformed,
    /// The broker is shutting down.
    ShuttingDown,
}

/// Category of a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Input could not be decoded.
    Malformed,
    /// Input exceeded a limit.
    LimitExceeded,
    /// Data does not match the declared schema.
    SchemaMismatch,
    /// Bug or unexpected failure on the sending side.
    Internal,
    /// Request not supported by this peer.
    Unsupported,
}

impl ControlMessage {
    /// `Reject` with `message` truncated to [`MAX_TEXT_LEN`], so it always encodes.
    pub fn reject(code: RejectCode, message: impl Into<String>) -> Self {
        ControlMessage::Reject {
            code,
            message: truncate(message.into(), MAX_TEXT_LEN),
        }
    }

    /// `Error` with `message` truncated to [`MAX_TEXT_LEN`], so it always encodes.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ControlMessage::Error {
            code,
            message: truncate(message.into(), MAX_TEXT_LEN),
        }
    }

    /// `Goodbye` with `reason` truncated to [`MAX_TEXT_LEN`], so it always encodes.
    pub fn goodbye(reason: impl Into<String>) -> Self {
        ControlMessage::Goodbye {
            reason: truncate(reason.into(), MAX_TEXT_LEN),
        }
    }

    /// `PlanFailed` with `message` truncated to [`MAX_TEXT_LEN`].
    pub fn plan_failed(request_id: u64, message: impl Into<String>) -> Self {
        ControlMessage::PlanFailed {
            request_id,
            message: truncate(message.into(), MAX_TEXT_LEN),
        }
    }

    /// `TaskFailed` with `message` truncated to [`MAX_TEXT_LEN`].
    pub fn task_failed(task_id: impl Into<String>, message: impl Into<String>) -> Self {
        ControlMessage::TaskFailed {
            task_id: task_id.into(),
            message: truncate(message.into(), MAX_TEXT_LEN),
            retryable: false,
        }
    }

    /// `TaskFailed` of a failure that may pass (see its `retryable`).
    pub fn task_failed_retryable(task_id: impl Into<String>, message: impl Into<String>) -> Self {
        ControlMessage::TaskFailed {
            task_id: task_id.into(),
            message: truncate(message.into(), MAX_TEXT_LEN),
            retryable: true,
        }
    }

    /// Message type as it appears in the JSON `type` tag, for logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            ControlMessage::Hello { .. } => "hello",
            ControlMessage::Welcome { .. } => "welcome",
            ControlMessage::Reject { .. } => "reject",
            ControlMessage::Heartbeat { .. } => "heartbeat",
            ControlMessage::HeartbeatAck { .. } => "heartbeat_ack",
            ControlMessage::Error { .. } => "error",
            ControlMessage::Goodbye { .. } => "goodbye",
            ControlMessage::Catalog { .. } => "catalog",
            ControlMessage::PlanRequest { .. } => "plan_request",
            ControlMessage::PlanReply { .. } => "plan_reply",
            ControlMessage::PlanFailed { .. } => "plan_failed",
            ControlMessage::ListTables { .. } => "list_tables",
            ControlMessage::TableList { .. } => "table_list",
            ControlMessage::TaskAssign { .. } => "task_assign",
            ControlMessage::StreamAssign { .. } => "stream_assign",
            ControlMessage::TaskCancel { .. } => "task_cancel",
            ControlMessage::TaskFailed { .. } => "task_failed",
            ControlMessage::StreamProgress { .. } => "stream_progress",
        }
    }

    /// Checks field lengths; applied on both encode and decode so a sender cannot produce a
    /// message its peer would refuse.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            ControlMessage::Hello {
                agent_id,
                software,
                capabilities,
                ..
            } => {
                check_len("agent_id", agent_id, MAX_NAME_LEN)?;
                check_len("software", software, MAX_NAME_LEN)?;
                if capabilities.len() > MAX_CAPABILITIES {
                    return Err(ProtocolError::FieldTooLong {
                        field: "capabilities",
                        len: capabilities.len(),
                        limit: MAX_CAPABILITIES,
                    });
                }
                capabilities
                    .iter()
                    .try_for_each(|c| check_len("capabilities[]", c, MAX_NAME_LEN))
            }
            ControlMessage::Welcome {
                agent_id, group, ..
            } => {
                check_len("agent_id", agent_id, MAX_NAME_LEN)?;
                check_len("group", group, MAX_NAME_LEN)
            }
            ControlMessage::Reject { message, .. } | ControlMessage::Error { message, .. } => {
                check_len("message", message, MAX_TEXT_LEN)
            }
            ControlMessage::Goodbye { reason } => check_len("reason", reason, MAX_TEXT_LEN),
            ControlMessage::Heartbeat { .. } | ControlMessage::HeartbeatAck { .. } => Ok(()),
            ControlMessage::Catalog { sources } => {
                if sources.len() > MAX_SOURCES {
                    return Err(ProtocolError::FieldTooLong {
                        field: "sources",
                        len: sources.len(),
                        limit: MAX_SOURCES,
                    });
                }
                sources.iter().try_for_each(|s| {
                    check_len("sources[].name", &s.name, MAX_NAME_LEN)?;
                    check_len("sources[].kind", &s.kind, MAX_NAME_LEN)
                })
            }
            ControlMessage::PlanRequest {
                datasource, spec, ..
            } => {
                check_len("datasource", datasource, MAX_NAME_LEN)?;
                check_spec(spec)
            }
            ControlMessage::PlanReply {
                schema,
                splits,
                table,
                ..
            } => {
                if let Some(t) = table {
                    t.check().map_err(|e| ProtocolError::InvalidField {
                        field: "table",
                        why: e.to_string(),
                    })?;
                }
                if schema.fields().len() > MAX_COLUMNS {
                    return Err(ProtocolError::FieldTooLong {
                        field: "schema.fields",
                        len: schema.fields().len(),
                        limit: MAX_COLUMNS,
                    });
                }
                if splits.len() > MAX_SPLITS {
                    return Err(ProtocolError::FieldTooLong {
                        field: "splits",
                        len: splits.len(),
                        limit: MAX_SPLITS,
                    });
                }
                splits.iter().try_for_each(check_split)
            }
            ControlMessage::PlanFailed { message, .. } => {
                check_len("message", message, MAX_TEXT_LEN)
            }
            ControlMessage::ListTables { datasource, .. } => {
                check_len("datasource", datasource, MAX_NAME_LEN)
            }
            ControlMessage::TableList {
                tables,
                not_migrated,
                rows,
                ..
            } => {
                if !rows.is_empty() && rows.len() != tables.len() {
                    return Err(ProtocolError::FieldTooLong {
                        field: "rows (one per table)",
                        len: rows.len(),
                        limit: tables.len(),
                    });
                }
                for (field, list) in [("tables", tables), ("not_migrated", not_migrated)] {
                    if list.len() > MAX_TABLES {
                        return Err(ProtocolError::FieldTooLong {
                            field,
                            len: list.len(),
                            limit: MAX_TABLES,
                        });
                    }
                    for t in list {
                        check_len(field, t, MAX_NAME_LEN)?;
                    }
                }
                Ok(())
            }
            ControlMessage::TaskAssign {
                task_id,
                datasource,
                spec,
                split,
                verify,
                ..
            } => {
                check_len("task_id", task_id, MAX_NAME_LEN)?;
                check_len("datasource", datasource, MAX_NAME_LEN)?;
                check_spec(spec)?;
                if let Some(ask) = verify {
                    ask.check().map_err(|why| ProtocolError::InvalidField {
                        field: "verify",
                        why,
                    })?;
                }
                check_split(split)
            }
            ControlMessage::StreamAssign {
                task_id,
                datasource,
                tables,
                ..
            } => {
                check_len("task_id", task_id, MAX_NAME_LEN)?;
                check_len("datasource", datasource, MAX_NAME_LEN)?;
                if tables.is_empty() || tables.len() > crate::changes::MAX_STREAM_TABLES as usize {
                    return Err(ProtocolError::FieldTooLong {
                        field: "tables",
                        len: tables.len(),
                        limit: crate::changes::MAX_STREAM_TABLES as usize,
                    });
                }
                tables.iter().try_for_each(check_spec)
            }
            ControlMessage::TaskCancel {
                task_id,
                reason: message,
            }
            | ControlMessage::TaskFailed {
                task_id, message, ..
            } => {
                check_len("task_id", task_id, MAX_NAME_LEN)?;
                check_len("message", message, MAX_TEXT_LEN)
            }
            ControlMessage::StreamProgress { task_id, .. } => {
                check_len("task_id", task_id, MAX_NAME_LEN)
            }
        }
    }

    /// JSON encoding of the message (the frame payload).
    pub fn encode(&self) -> Result<Bytes, ProtocolError> {
        self.validate()?;
        Ok(Bytes::from(serde_json::to_vec(self)?))
    }

    /// The message as a [`FrameKind::Control`] frame.
    pub fn to_frame(&self) -> Result<Frame, ProtocolError> {
        Ok(Frame::new(FrameKind::Control, self.encode()?))
    }

    /// Parses and validates a JSON payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let msg: ControlMessage = serde_json::from_slice(payload)?;
        msg.validate()?;
        Ok(msg)
    }

    /// Decodes a frame, which must be of kind [`FrameKind::Control`].
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtocolError> {
        frame.expect_kind(FrameKind::Control, "control")?;
        Self::decode(&frame.payload)
    }
}

/// A read's table, columns and filters are bounded by the frame; only the split key, column
/// count and fetch size need a word here (the agent applies its own, lower limits).
fn check_spec(spec: &ReadSpec) -> Result<(), ProtocolError> {
    if spec.columns.len() > MAX_COLUMNS {
        return Err(ProtocolError::FieldTooLong {
            field: "spec.columns",
            len: spec.columns.len(),
            limit: MAX_COLUMNS,
        });
    }
    Ok(())
}

fn check_split(split: &Split) -> Result<(), ProtocolError> {
    split.check().map_err(|why| ProtocolError::InvalidField {
        field: "split",
        why,
    })
}

pub(crate) fn check_len(field: &'static str, s: &str, limit: usize) -> Result<(), ProtocolError> {
    if s.len() > limit {
        Err(ProtocolError::FieldTooLong {
            field,
            len: s.len(),
            limit,
        })
    } else {
        Ok(())
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_tagged_snake_case() {
        let m = ControlMessage::HeartbeatAck {
            seq: 7,
            sent_unix_ms: 9,
            reconnect_spread_ms: 5000,
        };
        let json: serde_json::Value = serde_json::from_slice(&m.encode().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "heartbeat_ack", "seq": 7, "sent_unix_ms": 9, "reconnect_spread_ms": 5000})
        );
        // From a broker that does not know the field yet.
        let old = ControlMessage::decode(br#"{"type":"heartbeat_ack","seq":7,"sent_unix_ms":9}"#)
            .unwrap();
        assert!(matches!(
            old,
            ControlMessage::HeartbeatAck {
                reconnect_spread_ms: 0,
                ..
            }
        ));
        let r = ControlMessage::reject(RejectCode::NotFirstMessage, "x");
        let json: serde_json::Value = serde_json::from_slice(&r.encode().unwrap()).unwrap();
        assert_eq!(json["code"], "not_first_message");
    }

    #[test]
    fn a_table_list_has_one_row_estimate_per_table_or_none() {
        let list = |rows: Vec<u64>| ControlMessage::TableList {
            request_id: 1,
            tables: vec!["a".into(), "b".into()],
            not_migrated: Vec::new(),
            rows,
        };
        assert!(list(vec![3, 0]).validate().is_ok());
        assert!(list(Vec::new()).validate().is_ok());
        assert!(list(vec![3]).validate().is_err());
        let e = ControlMessage::decode(
            br#"{"type":"table_list","request_id":1,"tables":["a"],"rows":[1,2,3]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("rows"), "{e}");
        // From an agent that does not send estimates.
        let old = ControlMessage::decode(br#"{"type":"table_list","request_id":1,"tables":["a"]}"#);
        assert!(matches!(old, Ok(ControlMessage::TableList { rows, .. }) if rows.is_empty()));
    }

    #[test]
    fn unknown_fields_ignored_unknown_type_rejected() {
        let m = ControlMessage::decode(
            br#"{"type":"goodbye","reason":"superseded","future_field":[1,2,{"x":null}]}"#,
        )
        .unwrap();
        assert_eq!(m, ControlMessage::goodbye("superseded"));
        let e = ControlMessage::decode(br#"{"type":"teleport"}"#).unwrap_err();
        assert!(matches!(e, ProtocolError::Json(_)));
        assert!(e.to_string().starts_with("malformed control message: "));
    }

    #[test]
    fn u64_survive_json() {
        let m = ControlMessage::Welcome {
            version: 1,
            session_id: u64::MAX,
            agent_id: "a".into(),
            group: "g".into(),
            heartbeat_secs: u32::MAX,
            reconnect_spread_ms: u32::MAX,
        };
        assert_eq!(
            ControlMessage::from_frame(&m.to_frame().unwrap()).unwrap(),
            m
        );
    }

    #[test]
    fn hello_limits() {
        let hello = |agent_id: String, caps: usize| ControlMessage::Hello {
            versions: VersionRange::ours(),
            agent_id,
            software: "ferry-agent/0.1".into(),
            capabilities: (0..caps).map(|i| format!("c{i}")).collect(),
        };
        assert!(hello("a".repeat(256), 64).encode().is_ok());
        // Built by hand so decode-side validation is exercised, not just encode-side.
        let long_id = serde_json::to_vec(&hello("a".repeat(257), 0)).unwrap();
        assert!(matches!(
            ControlMessage::decode(&long_id),
            Err(ProtocolError::FieldTooLong {
                field: "agent_id",
                len: 257,
                limit: 256
            })
        ));
        let many = serde_json::to_vec(&hello("a".into(), 65)).unwrap();
        assert!(matches!(
            ControlMessage::decode(&many),
            Err(ProtocolError::FieldTooLong {
                field: "capabilities",
                len: 65,
                ..
            })
        ));
        assert!(hello("a".into(), 65).encode().is_err());
    }

    #[test]
    fn text_helpers_truncate_on_char_boundary() {
        let m = ControlMessage::error(ErrorCode::Internal, "é".repeat(MAX_TEXT_LEN));
        let ControlMessage::Error { message, .. } = &m else {
            unreachable!()
        };
        assert!(message.len() <= MAX_TEXT_LEN);
        assert!(m.encode().is_ok());
    }

    #[test]
    fn job_messages_round_trip_and_are_bounded() {
        use arrow_schema::{DataType, Field};
        let spec = ReadSpec {
            table: Some("orders".into()),
            ..Default::default()
        };
        let split = Split::all()
            .ordered(Some(ferry_model::SplitOrder {
                columns: vec!["id".into(), "name".into()],
                unique: true,
            }))
            .resumed_after(
                ferry_model::Position::new(vec![
                    ferry_model::KeyValue::Int(5),
                    ferry_model::KeyValue::text("x").unwrap(),
                ])
                .unwrap(),
            );
        let mut options = Options::new();
        options.insert("zeroDate".into(), "null".into());
        let msgs = [
            ControlMessage::Catalog {
                sources: vec![SourceInfo {
                    name: "orders_db".into(),
                    kind: "mysql".into(),
                }],
            },
            ControlMessage::PlanRequest {
                request_id: 1,
                datasource: "orders_db".into(),
                spec: Box::new(spec.clone()),
                options: options.clone(),
                max_splits: 8,
            },
            ControlMessage::PlanReply {
                request_id: 1,
                schema: Schema::new(vec![Field::new("id", DataType::Int64, false)]),
                splits: vec![split.clone()],
                estimated_rows: Some(10),
                table: None,
            },
            ControlMessage::plan_failed(1, "no such table"),
            ControlMessage::ListTables {
                request_id: 2,
                datasource: "orders_db".into(),
            },
            ControlMessage::TableList {
                request_id: 2,
                tables: vec!["orders".into(), "`odd.name`".into()],
                not_migrated: vec!["view totals".into()],
                rows: vec![1_000, 0],
            },
            ControlMessage::TaskAssign {
                task_id: "j1-t0".into(),
                datasource: "orders_db".into(),
                spec: Box::new(spec.clone()),
                options,
                split: Box::new(split.clone()),
                compression: crate::data::Compression::Zstd { level: 1 },
                verify: None,
            },
            ControlMessage::TaskAssign {
                task_id: "j1-v0".into(),
                datasource: "orders_db".into(),
                spec: Box::new(spec.clone()),
                options: Options::new(),
                split: Box::new(split.clone()),
                compression: crate::data::Compression::Zstd { level: 1 },
                verify: Some(Box::new(VerifyAsk {
                    key: vec!["id".into()],
                    buckets: 1024,
                    text_as: vec![],
                    scheme: ferry_model::Scheme::Canonical,
                    pass: ferry_model::VerifyPass::Rows {
                        buckets: vec![1, 5],
                    },
                })),
            },
            ControlMessage::TaskCancel {
                task_id: "j1-t0".into(),
                reason: "cancelled".into(),
            },
            ControlMessage::task_failed("j1-t0", "x".repeat(MAX_TEXT_LEN + 10)),
        ];
        for m in msgs {
            assert_eq!(
                ControlMessage::from_frame(&m.to_frame().unwrap()).unwrap(),
                m
            );
        }
        // Payloads are typed: no JSON inside a JSON string.
        let json: serde_json::Value = serde_json::from_slice(
            &ControlMessage::TaskAssign {
                task_id: "t".into(),
                datasource: "d".into(),
                spec: Box::new(spec.clone()),
                options: Options::new(),
                split: Box::new(split.clone()),
                compression: crate::data::Compression::None,
                verify: None,
            }
            .encode()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(json["spec"]["table"], "orders");
        assert_eq!(json["split"]["resume"][1]["text"], "x");
        // A split whose position does not fit its order is refused on decode.
        let mut bad = json.clone();
        bad["split"]["resume"] = serde_json::json!([{"int": "1"}]);
        assert!(matches!(
            ControlMessage::decode(&serde_json::to_vec(&bad).unwrap()),
            Err(ProtocolError::InvalidField { field: "split", .. })
        ));
        let mut bad = json.clone();
        bad["split"]["resume"] = serde_json::json!([{"num": "1 OR 1=1"}, {"int": "2"}]);
        assert!(ControlMessage::decode(&serde_json::to_vec(&bad).unwrap()).is_err());
        // A verification ask out of bounds is refused on decode, before an agent sees it.
        let mut bad = json;
        bad["verify"] =
            serde_json::json!({"key": [], "buckets": 4294967295u32, "pass": {"pass": "buckets"}});
        assert!(matches!(
            ControlMessage::decode(&serde_json::to_vec(&bad).unwrap()),
            Err(ProtocolError::InvalidField {
                field: "verify",
                ..
            })
        ));
        bad["verify"] = serde_json::json!({"key": [], "buckets": 16, "pass": {"pass": "values", "keys": vec![1u64; 100_000]}});
        assert!(ControlMessage::decode(&serde_json::to_vec(&bad).unwrap()).is_err());
        // The PostgreSQL scheme: a power of two of buckets (its SQL masks the key hash), and
        // at most one hash kind per column there can be.
        for ask in [
            serde_json::json!({"key": [], "buckets": 12, "scheme": {"postgres": ["int"]},
                               "pass": {"pass": "buckets"}}),
            serde_json::json!({"key": [], "buckets": 16, "scheme": {"postgres": vec!["int"; 5000]},
                               "pass": {"pass": "buckets"}}),
        ] {
            bad["verify"] = ask;
            assert!(
                matches!(
                    ControlMessage::decode(&serde_json::to_vec(&bad).unwrap()),
                    Err(ProtocolError::InvalidField {
                        field: "verify",
                        ..
                    })
                ),
                "{}",
                bad["verify"]
            );
        }
        let wide = ControlMessage::PlanRequest {
            request_id: 1,
            datasource: "d".into(),
            spec: Box::new(ReadSpec {
                columns: vec!["c".into(); MAX_COLUMNS + 1],
                ..spec
            }),
            options: Options::new(),
            max_splits: 1,
        };
        assert!(matches!(
            ControlMessage::decode(&serde_json::to_vec(&wide).unwrap()),
            Err(ProtocolError::FieldTooLong {
                field: "spec.columns",
                ..
            })
        ));
        let many = ControlMessage::Catalog {
            sources: (0..MAX_SOURCES + 1)
                .map(|i| SourceInfo {
                    name: format!("s{i}"),
                    kind: "mysql".into(),
                })
                .collect(),
        };
        assert!(many.encode().is_err());
    }

    #[test]
    fn wrong_frame_kind() {
        let f = Frame::new(FrameKind::Ack, Bytes::from_static(b"{}"));
        assert!(matches!(
            ControlMessage::from_frame(&f),
            Err(ProtocolError::UnexpectedFrame {
                expected: "control",
                got: FrameKind::Ack
            })
        ));
    }
}
