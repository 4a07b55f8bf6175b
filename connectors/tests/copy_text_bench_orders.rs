//! `copy_text` against the benchmark generator's output (`shared/bench/lib/gen_rows.py`):
//! decoding and re-encoding every row must reproduce the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use ferry_connectors::copy_text::{bench_orders_schema, read_file};
use time::macros::format_description;

/// The generator script, or `None` (with a note) if it or python3 is missing; under
/// `CI=true` a missing generator fails the test instead.
fn generator() -> Option<PathBuf> {
    let script = std::env::var_os("FERRY_GEN_ROWS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/lib/gen_rows.py"),
        PathBuf::from,
    );
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if python && script.is_file() {
        return Some(script);
    }
    let why = format!(
        "needs python3 (found: {python}) and {} (found: {}; set FERRY_GEN_ROWS to override)",
        script.display(),
        script.is_file()
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("CI=true but the bench_orders generator is unavailable: {why}");
    }
    eprintln!("SKIPPED: the bench_orders generator is unavailable: {why}");
    None
}

fn generate(script: &Path, rows: usize, out: &Path) {
    let status = Command::new("python3")
        .arg(script)
        .arg(rows.to_string())
        .arg(out)
        .status()
        .expect("run gen_rows.py");
    assert!(status.success(), "gen_rows.py failed: {status}");
}

/// Test-only COPY text encoder for one value; `None` for columns compared by value instead.
fn encode(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return Some("\\N".to_owned());
    }
    Some(match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Utf8 => {
            let mut out = String::new();
            for c in array.as_string::<i32>().value(row).chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out
        }
        &DataType::Decimal128(_, scale) => {
            let value = array.as_primitive::<Decimal128Type>().value(row);
            let unit = 10u128.pow(u32::try_from(scale).unwrap());
            let (sign, abs) = (if value < 0 { "-" } else { "" }, value.unsigned_abs());
            format!(
                "{sign}{}.{:0width$}",
                abs / unit,
                abs % unit,
                width = scale as usize
            )
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            time::Date::from_julian_day(days + 2_440_588)
                .unwrap()
                .format(format_description!("[year]-[month]-[day]"))
                .unwrap()
        }
        DataType::Boolean => if array.as_boolean().value(row) {
            "1"
        } else {
            "0"
        }
        .to_owned(),
        DataType::Float64 | DataType::Timestamp(..) => return None,
        other => panic!("no test encoder for {other}"),
    })
}

/// Parses a timestamp field with the `time` crate (an independent oracle): UTC micros.
fn oracle_micros(text: &str) -> i64 {
    let format = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let at = time::PrimitiveDateTime::parse(text, format)
        .unwrap_or_else(|e| panic!("oracle cannot parse {text:?}: {e}"));
    i64::try_from(at.assume_utc().unix_timestamp_nanos() / 1000).unwrap()
}

/// Compares every field of `lines` with the decoded batches.
fn check_round_trip(input: &str, batches: &[RecordBatch]) -> usize {
    let lines: Vec<&str> = input.strip_suffix('\n').unwrap().split('\n').collect();
    let mut row_of_file = 0;
    for batch in batches {
        for row in 0..batch.num_rows() {
            let line = lines[row_of_file];
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                fields.len(),
                batch.num_columns(),
                "line {}",
                row_of_file + 1
            );
            for (col, (field, array)) in fields.iter().zip(batch.columns()).enumerate() {
                let name = batch.schema().field(col).name().clone();
                let at = format!("line {}, column {name}", row_of_file + 1);
                match encode(array, row) {
                    Some(encoded) => assert_eq!(&encoded, field, "{at}"),
                    None if *field == "\\N" => assert!(array.is_null(row), "{at}"),
                    None => match array.data_type() {
                        DataType::Float64 => {
                            let decoded = array.as_primitive::<Float64Type>().value(row);
                            let expected: f64 = field.parse().unwrap();
                            assert_eq!(decoded.to_bits(), expected.to_bits(), "{at}");
                        }
                        _ => {
                            let decoded =
                                array.as_primitive::<TimestampMicrosecondType>().value(row);
                            assert_eq!(decoded, oracle_micros(field), "{at}");
                        }
                    },
                }
            }
            row_of_file += 1;
        }
    }
    assert_eq!(row_of_file, lines.len());
    row_of_file
}

#[test]
fn generated_bench_orders_round_trip() {
    let Some(script) = generator() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench_orders.tsv");
    generate(&script, 2000, &path);
    let input = std::fs::read_to_string(&path).unwrap();

    let batches = read_file(&path, bench_orders_schema(), 300).unwrap();
    let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [300, 300, 300, 300, 300, 300, 200]);
    assert_eq!(sizes.iter().sum::<usize>(), 2000);
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, (1..=2000).collect::<Vec<i64>>());
    assert_eq!(check_round_trip(&input, &batches), 2000);

    // The generator's rare shapes really were exercised.
    let notes: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.column(4).as_string::<i32>().iter().flatten())
        .collect();
    assert!(notes.iter().any(|n| n.contains("\nsecond line\tcol\\path")));
    assert!(notes.iter().any(|n| n.contains('🚚') || n.contains('東')));
}
