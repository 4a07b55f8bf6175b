//! Text logs: each line cut into fields by a regular expression with named
//! groups (`regex` crate syntax), one string column per group.
//!
//! Why a regex and not a fixed format: access logs differ per server and
//! per configuration; a named-group pattern is what Logstash grok and
//! Vector's `parse_regex` use, and it maps directly to columns. Presets:
//!
//! * `nginx`: the nginx `combined` format
//!   `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`;
//! * `user_log`: the DataWorks tutorial's `user_log.txt`, which is combined
//!   without the space before `"$http_referer"` and with trailing
//!   `[unknown_content];` (a column `unknown_content`).
//!
//! Without `pattern` every line is one string column `line` (or the single
//! name in `column`). `column` entries (by group name) give types: the
//! columns are then exactly those listed; `timestamp` fields are parsed with
//! `timeFormat` (chrono strftime, e.g. `%d/%b/%Y:%H:%M:%S %z` for nginx's
//! `time_local`; with `%z` the value is stored as UTC). A line that does not
//! match is skipped and counted by default (`onMismatch: skip`, a warning at
//! the end of the file with the count and the first such line);
//! `onMismatch: error` fails naming the file and line.

use std::sync::Arc;

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use regex::Regex;

use super::lines::Lines;
use super::value::from_text;
use super::{FileOptions, OnMismatch, ReadCtx};
use crate::error::ConnectorError;

const Q: &str = r#"(?:[^"\\]|\\.)*"#;

/// The regex a `pattern` option means (presets expanded).
pub fn expand_pattern(pattern: &str) -> String {
    let head = format!(
        r#"^(?P<remote_addr>\S+) - (?P<remote_user>\S+) \[(?P<time_local>[^\]]*)\] "(?P<request>{Q})" (?P<status>\d{{3}}) (?P<body_bytes_sent>\d+|-)"#
    );
    match pattern.trim() {
        "nginx" | "nginx_combined" | "combined" => {
            format!(r#"{head} "(?P<http_referer>{Q})" "(?P<http_user_agent>{Q})"\s*$"#)
        }
        "user_log" | "dataworks_user_log" => format!(
            r#"{head}\s*"(?P<http_referer>{Q})" "(?P<http_user_agent>{Q})"(?:\s+(?P<unknown_content>.*?))?;?\s*$"#
        ),
        other => other.to_string(),
    }
}

fn compile(opts: &FileOptions) -> Result<Option<Regex>, ConnectorError> {
    opts.pattern
        .as_deref()
        .map(|p| {
            Regex::new(&expand_pattern(p))
                .map_err(|e| ConnectorError::config("pattern", e.to_string()))
        })
        .transpose()
}

/// Columns: the pattern's named groups (or `line`), typed by `column`.
pub fn schema(opts: &FileOptions) -> Result<SchemaRef, ConnectorError> {
    let re = compile(opts)?;
    let Some(re) = re else {
        let (name, dt) = match opts.columns.as_slice() {
            [] => ("line".to_string(), DataType::Utf8),
            [c] => (c.name.clone(), c.data_type.clone()),
            _ => {
                return Err(ConnectorError::config(
                    "column",
                    "without a `pattern` a log line is one column",
                ))
            }
        };
        return Ok(Arc::new(Schema::new(vec![Field::new(name, dt, true)])));
    };
    let groups: Vec<&str> = re.capture_names().flatten().collect();
    if groups.is_empty() {
        return Err(ConnectorError::config(
            "pattern",
            "has no named groups (?P<name>...)",
        ));
    }
    if opts.columns.is_empty() {
        return Ok(Arc::new(Schema::new(
            groups
                .iter()
                .map(|g| Field::new(*g, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        )));
    }
    let mut fields = Vec::new();
    for c in &opts.columns {
        if !groups.contains(&c.name.as_str()) {
            return Err(ConnectorError::config(
                "column",
                format!(
                    "`{}` is not a group of the pattern; groups: {}",
                    c.name,
                    groups.join(", ")
                ),
            ));
        }
        fields.push(Field::new(&c.name, c.data_type.clone(), true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

pub(crate) async fn read(ctx: &ReadCtx<'_>) -> Result<u64, ConnectorError> {
    let re = compile(ctx.opts)?;
    let fields = ctx.full.fields();
    // Capture group index of each column.
    let groups: Vec<usize> = match &re {
        None => vec![0],
        Some(re) => fields
            .iter()
            .map(|f| {
                re.capture_names()
                    .position(|n| n == Some(f.name().as_str()))
                    .unwrap_or(0)
            })
            .collect(),
    };
    let mut lines = Lines::open(ctx.loc, ctx.path).await?;
    let mut builders: Vec<StringBuilder> = fields.iter().map(|_| StringBuilder::new()).collect();
    let mut line_nos: Vec<u64> = Vec::new();
    let (mut sent, mut skipped, mut first_skipped) = (0u64, 0u64, None);
    loop {
        let line = lines.next_str().await?;
        let end = line.is_none();
        if let Some((no, l)) = line {
            match &re {
                None => {
                    builders[0].append_value(l);
                    line_nos.push(no);
                }
                Some(re) => match re.captures(l) {
                    Some(caps) => {
                        for (b, &g) in builders.iter_mut().zip(&groups) {
                            b.append_option(caps.get(g).map(|m| m.as_str()));
                        }
                        line_nos.push(no);
                    }
                    None if ctx.opts.on_mismatch == OnMismatch::Error => {
                        return Err(ctx.err(Some(no), "does not match the pattern"));
                    }
                    None => {
                        skipped += 1;
                        first_skipped.get_or_insert(no);
                    }
                },
            }
        }
        if line_nos.len() >= ctx.fetch || (end && !line_nos.is_empty()) {
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(fields.len());
            for (f, b) in fields.iter().zip(builders.iter_mut()) {
                cols.push(convert(ctx, f, &b.finish(), &line_nos)?);
            }
            let batch = RecordBatch::try_new(ctx.full.clone(), cols)
                .map_err(|e| ctx.err(None, e.to_string()))?;
            sent += ctx.send(batch).await?;
            line_nos.clear();
        }
        if end {
            break;
        }
    }
    if skipped > 0 {
        tracing::warn!(
            file = ctx.path,
            skipped,
            first_line = first_skipped.unwrap_or(0),
            "skipped log lines that do not match the pattern"
        );
    }
    Ok(sent)
}

fn convert(
    ctx: &ReadCtx<'_>,
    f: &Field,
    text: &StringArray,
    line_nos: &[u64],
) -> Result<ArrayRef, ConnectorError> {
    let at = |row: usize| line_nos.get(row).copied();
    if let (DataType::Timestamp(TimeUnit::Microsecond, tz), Some(fmt)) =
        (f.data_type(), ctx.opts.time_format.as_deref())
    {
        let mut b =
            TimestampMicrosecondBuilder::with_capacity(text.len()).with_timezone_opt(tz.clone());
        for (row, v) in text.iter().enumerate() {
            match v.map(str::trim).filter(|s| !s.is_empty()) {
                None => b.append_null(),
                Some(s) => {
                    let us = parse_time(s, fmt).ok_or_else(|| {
                        ctx.err(
                            at(row),
                            format!(
                                "column `{}`: `{s}` does not fit timeFormat `{fmt}`",
                                f.name()
                            ),
                        )
                    })?;
                    b.append_value(us);
                }
            }
        }
        return Ok(Arc::new(b.finish()));
    }
    from_text(text, f.data_type()).map_err(|bad| {
        ctx.err(
            at(bad.row),
            format!("column `{}`: {}", f.name(), bad.message),
        )
    })
}

/// Microseconds since the epoch (UTC when the format has an offset).
fn parse_time(s: &str, fmt: &str) -> Option<i64> {
    if fmt.contains("%z") || fmt.contains("%:z") {
        chrono::DateTime::parse_from_str(s, fmt)
            .ok()
            .map(|d| d.timestamp_micros())
    } else {
        chrono::NaiveDateTime::parse_from_str(s, fmt)
            .ok()
            .map(|d| d.and_utc().timestamp_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_combined_and_user_log() {
        let re = Regex::new(&expand_pattern("nginx")).unwrap();
        let l = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
        let c = re.captures(l).unwrap();
        assert_eq!(&c["time_local"], "10/Oct/2000:13:55:36 -0700");
        assert_eq!(&c["http_user_agent"], "Mozilla/4.08 [en] (Win98; I ;Nav)");
        let re = Regex::new(&expand_pattern("user_log")).unwrap();
        let l = r#"60.247.68.78 - - [12/Feb/2014:03:20:56 +0800] "GET /x HTTP/1.1" 200 1063"-" "Mozilla/5.0" [k=v];"#;
        let c = re.captures(l).unwrap();
        assert_eq!(&c["body_bytes_sent"], "1063");
        assert_eq!(&c["unknown_content"], "[k=v]");
        assert_eq!(
            parse_time("10/Oct/2000:13:55:36 -0700", "%d/%b/%Y:%H:%M:%S %z"),
            Some(971_211_336_000_000)
        );
    }
}
