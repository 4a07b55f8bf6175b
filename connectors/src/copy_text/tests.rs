use super::*;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, Time64MicrosecondType, TimestampMicrosecondType, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use arrow_array::Array;

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// One nullable column `c` of `data_type`.
fn one(data_type: DataType) -> SchemaRef {
    schema(vec![Field::new("c", data_type, true)])
}

/// Decodes `input` in one go; all batches, in order.
fn decode_all(
    schema: SchemaRef,
    input: &[u8],
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, CopyTextError> {
    let mut decoder = CopyTextDecoder::new(schema, batch_rows)?;
    let used = decoder.decode(input)?;
    assert_eq!(used, input.len(), "complete input must be consumed");
    let mut batches = Vec::new();
    while let Some(batch) = decoder.next_batch()? {
        batches.push(batch);
    }
    while let Some(batch) = decoder.finish()? {
        batches.push(batch);
    }
    Ok(batches)
}

/// Decodes one column's values (one per line) into a single batch and returns the column.
fn column(data_type: DataType, lines: &[&str]) -> ArrayRef {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let batches = decode_all(one(data_type), input.as_bytes(), 1000).expect("decodes");
    assert_eq!(batches.len(), 1);
    Arc::clone(batches[0].column(0))
}

/// The error of decoding one column's single value.
fn error(data_type: DataType, value: &str) -> String {
    decode_all(one(data_type), format!("{value}\n").as_bytes(), 10)
        .expect_err(value)
        .to_string()
}

fn strings(array: &ArrayRef) -> Vec<Option<String>> {
    array
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_owned))
        .collect()
}

#[test]
fn signed_integers() {
    let a = column(
        DataType::Int64,
        &[
            "0",
            "-9223372036854775808",
            "9223372036854775807",
            "+42",
            "-1",
            "\\N",
        ],
    );
    let a = a.as_primitive::<Int64Type>();
    assert_eq!(
        a.iter().collect::<Vec<_>>(),
        [
            Some(0),
            Some(i64::MIN),
            Some(i64::MAX),
            Some(42),
            Some(-1),
            None
        ]
    );
    let a = column(DataType::Int32, &["-2147483648", "2147483647"]);
    assert_eq!(
        a.as_primitive::<Int32Type>().values(),
        &[i32::MIN, i32::MAX]
    );
    let a = column(DataType::Int16, &["-32768", "32767"]);
    assert_eq!(
        a.as_primitive::<Int16Type>().values(),
        &[i16::MIN, i16::MAX]
    );
    let a = column(DataType::Int8, &["-128", "127"]);
    assert_eq!(a.as_primitive::<Int8Type>().values(), &[i8::MIN, i8::MAX]);

    let e = error(DataType::Int32, "2147483648");
    assert!(e.contains("within the Int32 range"), "{e}");
    let e = error(DataType::Int16, "-32769");
    assert!(e.contains("within the Int16 range"), "{e}");
    let e = error(DataType::Int64, "9223372036854775808");
    assert!(e.contains("within the Int64 range"), "{e}");
    let e = error(DataType::Int64, "12a");
    assert_eq!(
        e,
        "line 1, column `c`: invalid value \"12a\": expected an integer ([-+]digits) for Int64"
    );
    let e = error(DataType::Int32, "");
    assert!(
        e.contains("invalid value \"\""),
        "an empty field is not NULL: {e}"
    );
}

#[test]
fn unsigned_integers() {
    let a = column(DataType::UInt64, &["0", "18446744073709551615", "+7"]);
    assert_eq!(a.as_primitive::<UInt64Type>().values(), &[0, u64::MAX, 7]);
    let a = column(DataType::UInt32, &["4294967295"]);
    assert_eq!(a.as_primitive::<UInt32Type>().values(), &[u32::MAX]);
    let a = column(DataType::UInt16, &["65535"]);
    assert_eq!(a.as_primitive::<UInt16Type>().values(), &[u16::MAX]);
    let a = column(DataType::UInt8, &["255"]);
    assert_eq!(a.as_primitive::<UInt8Type>().values(), &[u8::MAX]);
    for (data_type, bad) in [
        (DataType::UInt64, "18446744073709551616"),
        (DataType::UInt64, "-1"),
        (DataType::UInt8, "256"),
    ] {
        let e = error(data_type.clone(), bad);
        assert!(e.contains(&format!("within the {data_type} range")), "{e}");
    }
}

#[test]
fn floats() {
    let a = column(
        DataType::Float64,
        &[
            "523.1234567",
            "-0.0",
            "1e300",
            "NaN",
            "Infinity",
            "-Infinity",
            "\\N",
        ],
    );
    let a = a.as_primitive::<Float64Type>();
    assert_eq!(a.value(0), 523.1234567);
    assert!(a.value(1) == 0.0 && a.value(1).is_sign_negative());
    assert_eq!(a.value(2), 1e300);
    assert!(a.value(3).is_nan());
    assert_eq!(a.value(4), f64::INFINITY);
    assert_eq!(a.value(5), f64::NEG_INFINITY);
    assert!(a.is_null(6));
    let a = column(DataType::Float32, &["1.5", "NaN"]);
    assert_eq!(a.as_primitive::<Float32Type>().value(0), 1.5);
    let e = error(DataType::Float64, "1.5.2");
    assert!(e.contains("expected a floating-point number"), "{e}");
}

#[test]
fn decimals() {
    let a = column(
        DataType::Decimal128(18, 4),
        &[
            "12345.6789",
            "-12345.6789",
            "-0.5",
            "0",
            "99999999999999.9999",
            "-99999999999999.9999",
            "\\N",
        ],
    );
    let a = a.as_primitive::<Decimal128Type>();
    assert_eq!(a.data_type(), &DataType::Decimal128(18, 4));
    assert_eq!(
        a.iter().collect::<Vec<_>>(),
        [
            Some(123_456_789),
            Some(-123_456_789),
            Some(-5000),
            Some(0),
            Some(999_999_999_999_999_999),
            Some(-999_999_999_999_999_999),
            None
        ]
    );
    assert_eq!(a.value_as_string(2), "-0.5000");
    let max38 = "9".repeat(38);
    let a = column(DataType::Decimal128(38, 0), &[&max38, &format!("-{max38}")]);
    let a = a.as_primitive::<Decimal128Type>();
    assert_eq!(a.values(), &[10i128.pow(38) - 1, -(10i128.pow(38) - 1)]);
    let a = column(DataType::Decimal128(38, 38), &[&format!("0.{max38}")]);
    assert_eq!(
        a.as_primitive::<Decimal128Type>().value(0),
        10i128.pow(38) - 1
    );

    let e = error(DataType::Decimal128(18, 4), "1.23456");
    assert!(
        e.contains(
            "expected at most 4 fractional digits for Decimal128(18, 4) (refusing to round)"
        ),
        "{e}"
    );
    let e = error(DataType::Decimal128(18, 4), "123456789012345");
    assert!(e.contains("at most 14 integer digits"), "{e}");
    let e = error(DataType::Decimal128(38, 0), &format!("1{max38}"));
    assert!(e.contains("at most 38 integer digits"), "{e}");
    let e = error(DataType::Decimal128(18, 4), "1e3");
    assert!(e.contains("a decimal number"), "{e}");
}

#[test]
fn strings_null_empty_and_unicode() {
    let a = column(
        DataType::Utf8,
        &[
            "",
            "\\N",
            "José Müller 🚀",
            "东京 서울 Москва",
            "👍🏽🇯🇵❤️",
            "\\\\N",
            "\\\\",
            "a\rb",
        ],
    );
    assert_eq!(
        strings(&a),
        [
            Some(""),
            None,
            Some("José Müller 🚀"),
            Some("东京 서울 Москва"),
            Some("👍🏽🇯🇵❤️"),
            Some("\\N"),
            Some("\\"),
            Some("a\rb"),
        ]
        .map(|s| s.map(str::to_owned))
    );
    let a = column(DataType::LargeUtf8, &["", "\\N", "ß\\t🚀"]);
    let values: Vec<_> = a.as_string::<i64>().iter().collect();
    assert_eq!(values, [Some(""), None, Some("ß\t🚀")]);
}

#[test]
fn invalid_utf8_is_an_error() {
    // Raw invalid bytes, and invalid bytes produced by escapes.
    for input in [&b"ab\xffcd\n"[..], b"\\xff\n", b"\\303\n", b"\\303(\n"] {
        let e = decode_all(one(DataType::Utf8), input, 10)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 1, column `c`: invalid value"), "{e}");
        assert!(e.contains("expected valid UTF-8 text"), "{e}");
    }
    // Valid UTF-8 spelled with escapes is fine.
    let a = column(DataType::Utf8, &["\\303\\251t\\xc3\\xa9"]);
    assert_eq!(strings(&a), [Some("été".to_owned())]);
}

#[test]
fn all_escapes_in_a_field() {
    let a = column(
        DataType::Utf8,
        &[
            "\\\\|\\t|\\n|\\r|\\b|\\f|\\v",
            "\\101\\60\\7|\\x41\\x9|\\xg",
            "\\q\\\"\\'\\.",
            "tab\\\there",
        ],
    );
    assert_eq!(
        strings(&a),
        [
            Some("\\|\t|\n|\r|\u{8}|\u{c}|\u{b}"),
            Some("A0\u{7}|A\u{9}|xg"),
            Some("q\"'."),
            Some("tab\there"),
        ]
        .map(|s| s.map(str::to_owned))
    );
    // Escapes in non-text columns are undone before parsing.
    let a = column(DataType::Int32, &["\\61\\x32"]);
    assert_eq!(a.as_primitive::<Int32Type>().value(0), 12);
}

#[test]
fn escaped_line_feed_is_data_and_keeps_line_numbers() {
    // MariaDB writes an embedded newline as a backslash and a real line feed.
    let s = schema(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Int32, true),
    ]);
    let input = b"one\\\ntwo\t1\nx\t2\ny\tbad\n";
    let e = decode_all(Arc::clone(&s), input, 10).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("line 4, column `b`: invalid value \"bad\""),
        "{e}"
    );
    let batches = decode_all(s, &input[..input.len() - 6], 10).unwrap();
    assert_eq!(
        strings(batches[0].column(0)),
        [Some("one\ntwo".to_owned()), Some("x".to_owned())]
    );
}

#[test]
fn binary() {
    let a = column(
        DataType::Binary,
        &["\\\\x", "\\\\x0a0B", "\\N", "\\\\xdeadbeef"],
    );
    let values: Vec<_> = a.as_binary::<i32>().iter().collect();
    assert_eq!(
        values,
        [
            Some(&b""[..]),
            Some(&[0x0a, 0x0b][..]),
            None,
            Some(&[0xde, 0xad, 0xbe, 0xef][..])
        ]
    );
    let a = column(DataType::LargeBinary, &["\\\\xff"]);
    assert_eq!(a.as_binary::<i64>().value(0), [0xff]);
    for bad in ["0a0b", "\\\\x0", "\\\\xzz", "\\x41"] {
        let e = error(DataType::Binary, bad);
        assert!(e.contains("expected bytea hex form"), "{e}");
    }
}

#[test]
fn booleans() {
    let a = column(
        DataType::Boolean,
        &[
            "t", "f", "TRUE", "false", "1", "0", "y", "N", "yes", "no", "On", "off", "\\N",
        ],
    );
    let values: Vec<_> = a.as_boolean().iter().collect();
    let (t, f) = (Some(true), Some(false));
    assert_eq!(values, [t, f, t, f, t, f, t, f, t, f, t, f, None]);
    let e = error(DataType::Boolean, "maybe");
    assert!(e.contains("expected a boolean"), "{e}");
}

#[test]
fn dates() {
    let a = column(
        DataType::Date32,
        &[
            "1970-01-01",
            "2021-03-06",
            "1969-12-31",
            "1900-01-01",
            "2024-02-29",
            "\\N",
        ],
    );
    let values: Vec<_> = a.as_primitive::<Date32Type>().iter().collect();
    assert_eq!(
        values,
        [
            Some(0),
            Some(18692),
            Some(-1),
            Some(-25567),
            Some(19782),
            None
        ]
    );
    for (bad, what) in [
        ("2021-13-01", "month 13"),
        ("2021-02-30", "day 30"),
        ("2023-02-29", "day 29"),
        ("2021-03-06 00:00:00", "a date YYYY-MM-DD"),
    ] {
        let e = error(DataType::Date32, bad);
        assert!(e.contains(what), "{e}");
    }
}

#[test]
fn timestamps_and_times() {
    let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let base = 1_614_834_367_000_000i64; // 2021-03-04 05:06:07 UTC
    let lines = [
        "2021-03-04 05:06:07",
        "2021-03-04T05:06:07.1",
        "2021-03-04 05:06:07.12",
        "2021-03-04 05:06:07.123",
        "2021-03-04 05:06:07.1234",
        "2021-03-04 05:06:07.12345",
        "2021-03-04 05:06:07.123456",
        "1969-12-31 23:59:59.5",
        "\\N",
    ];
    let expected = [
        Some(base),
        Some(base + 100_000),
        Some(base + 120_000),
        Some(base + 123_000),
        Some(base + 123_400),
        Some(base + 123_450),
        Some(base + 123_456),
        Some(-500_000),
        None,
    ];
    for data_type in [naive.clone(), utc.clone()] {
        let a = column(data_type.clone(), &lines);
        assert_eq!(a.data_type(), &data_type);
        let values: Vec<_> = a
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect();
        assert_eq!(values, expected, "{data_type}");
    }
    let hour = 3_600_000_000i64;
    let a = column(
        utc.clone(),
        &[
            "2021-03-04 05:06:07Z",
            "2021-03-04 05:06:07+02",
            "2021-03-04 05:06:07+05:30",
            "2021-03-04 05:06:07-03:00",
            "2021-03-04 05:06:07.25-08",
        ],
    );
    assert_eq!(
        a.as_primitive::<TimestampMicrosecondType>().values(),
        &[
            base,
            base - 2 * hour,
            base - 5 * hour - hour / 2,
            base + 3 * hour,
            base + 8 * hour + 250_000
        ]
    );
    // Any zone name: the values are UTC either way.
    let shanghai = DataType::Timestamp(TimeUnit::Microsecond, Some("Asia/Shanghai".into()));
    let a = column(shanghai.clone(), &["2021-03-04 05:06:07+08"]);
    assert_eq!(a.data_type(), &shanghai);
    assert_eq!(
        a.as_primitive::<TimestampMicrosecondType>().value(0),
        base - 8 * hour
    );

    let e = error(naive.clone(), "2021-03-04 05:06:07+02");
    assert!(e.contains("without a UTC offset"), "{e}");
    let e = error(naive.clone(), "2021-03-04 25:06:07");
    assert!(e.contains("valid time of day"), "{e}");
    let e = error(naive, "2021-03-04 05:06:07.1234567");
    assert!(e.contains("at most 6 fractional second digits"), "{e}");
    let e = error(utc, "2021-02-30 05:06:07");
    assert!(e.contains("day 30"), "{e}");

    let time = DataType::Time64(TimeUnit::Microsecond);
    let a = column(
        time.clone(),
        &["00:00:00", "23:59:59.999999", "12:34:56.7", "\\N"],
    );
    let values: Vec<_> = a.as_primitive::<Time64MicrosecondType>().iter().collect();
    assert_eq!(
        values,
        [Some(0), Some(86_399_999_999), Some(45_296_700_000), None]
    );
    let e = error(time, "25:00:00");
    assert!(e.contains("valid time of day"), "{e}");
}

#[test]
fn null_in_non_nullable_column() {
    let s = schema(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]);
    let e = decode_all(Arc::clone(&s), b"1\tx\n2\t\\N\n", 10).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2, column `name`: NULL (\\N) in a non-nullable column"
    );
    // An empty string is not NULL.
    let batches = decode_all(s, b"1\t\n", 10).unwrap();
    assert_eq!(strings(batches[0].column(1)), [Some(String::new())]);
}

#[test]
fn wrong_field_count() {
    let s = schema(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("b", DataType::Utf8, true),
    ]);
    let e = decode_all(Arc::clone(&s), b"1\tx\n2\n", 10).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: expected 2 tab-separated fields, found 1: \"2\""
    );
    let e = decode_all(Arc::clone(&s), b"1\tx\n2\tx\t\n", 10).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: expected 2 tab-separated fields, found 3: \"2\\tx\\t\""
    );
    let e = decode_all(Arc::clone(&s), b"\n", 10).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("line 1: expected 2 tab-separated fields, found 1"));
    // An escaped tab is data, not a separator.
    let batches = decode_all(s, b"1\tx\\\ty\n", 10).unwrap();
    assert_eq!(strings(batches[0].column(1)), [Some("x\ty".to_owned())]);
}

#[test]
fn error_text_is_truncated() {
    let long = "é".repeat(100);
    let e = error(DataType::Int64, &long);
    let CopyTextError::InvalidValue {
        line, column, text, ..
    } = decode_all(one(DataType::Int64), format!("{long}\n").as_bytes(), 10).unwrap_err()
    else {
        panic!("{e}");
    };
    assert_eq!((line, column.as_str()), (1, "c"));
    assert_eq!(text, format!("{}…", "é".repeat(60)));
    assert!(e.contains(&text), "{e}");
    // Invalid UTF-8 and control characters stay readable.
    assert_eq!(snippet(b"a\xffb\x01"), "a\u{fffd}b\\u{1}");
    assert_eq!(snippet(&[b'x'; 61]), format!("{}…", "x".repeat(60)));
    assert_eq!(snippet(&[b'x'; 60]), "x".repeat(60));
    assert_eq!(snippet(&[0xff; 1000]).chars().count(), 61);
}

#[test]
fn error_names_line_and_column_in_wide_rows() {
    let input = b"1\t3141592\t200\tJos\xc3\xa9\tnote\t12345.6789\t\\N\t523.1\t2021-03-04 05:06:07\t2021-03-05 01:02:03.123456\t2021-03-06\t1\t{}\n\
2\t5\t\\N\t\\N\t\\N\t1.5\t0.5\t\\N\t2021-03-04 05:06:07\t\\N\t2021-02-30\t0\t\\N\n";
    let e = decode_all(bench_orders_schema(), input, 10).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2, column `ship_date`: invalid value \"2021-02-30\": expected a valid date \
         (day 30 is not 01-28 for 2021-02)"
    );
}

#[test]
fn decoder_is_poisoned_after_an_error() {
    let mut decoder = CopyTextDecoder::new(one(DataType::Int32), 2).unwrap();
    assert!(decoder.decode(b"1\n2\n3\nx\n4\n").is_err());
    // The full batch before the bad line is still there.
    let batch = decoder.next_batch().unwrap().unwrap();
    assert_eq!(batch.num_rows(), 2);
    assert!(decoder.next_batch().unwrap().is_none());
    assert!(matches!(
        decoder.decode(b"5\n"),
        Err(CopyTextError::Poisoned { line: 4 })
    ));
    assert!(matches!(
        decoder.finish(),
        Err(CopyTextError::Poisoned { line: 4 })
    ));
}

#[test]
fn batches_are_full_until_finish() {
    let mut decoder = CopyTextDecoder::new(one(DataType::Int64), 3).unwrap();
    let input: String = (1..=8).map(|i| format!("{i}\n")).collect();
    assert_eq!(decoder.decode(input.as_bytes()).unwrap(), input.len());
    let sizes = |b: Option<RecordBatch>| b.map(|b| b.num_rows());
    assert_eq!(sizes(decoder.next_batch().unwrap()), Some(3));
    assert_eq!(sizes(decoder.next_batch().unwrap()), Some(3));
    assert_eq!(
        sizes(decoder.next_batch().unwrap()),
        None,
        "2 rows are not a batch"
    );
    assert_eq!(sizes(decoder.finish().unwrap()), Some(2));
    assert_eq!(sizes(decoder.finish().unwrap()), None);
    assert!(matches!(
        decoder.decode(b"9\n"),
        Err(CopyTextError::Finished)
    ));

    // Untaken full batches come out of finish, in order.
    let mut decoder = CopyTextDecoder::new(one(DataType::Int64), 3).unwrap();
    decoder.decode(input.as_bytes()).unwrap();
    let mut firsts = Vec::new();
    while let Some(batch) = decoder.finish().unwrap() {
        firsts.push(batch.column(0).as_primitive::<Int64Type>().value(0));
    }
    assert_eq!(firsts, [1, 4, 7]);

    // No rows at all.
    let mut decoder = CopyTextDecoder::new(one(DataType::Int64), 3).unwrap();
    assert_eq!(decoder.decode(b"").unwrap(), 0);
    assert!(decoder.finish().unwrap().is_none());
}

#[test]
fn partial_line_is_left_for_the_next_call() {
    let mut decoder = CopyTextDecoder::new(one(DataType::Utf8), 10).unwrap();
    assert_eq!(decoder.decode(b"ab\ncd").unwrap(), 3);
    assert_eq!(
        decoder.decode(b"cd\\").unwrap(),
        0,
        "a trailing backslash needs more"
    );
    assert_eq!(decoder.decode(b"cd\\\nx\n").unwrap(), 6);
    let batch = decoder.finish().unwrap().unwrap();
    assert_eq!(
        strings(batch.column(0)),
        [Some("ab".to_owned()), Some("cd\nx".to_owned())]
    );

    let mut decoder = CopyTextDecoder::new(one(DataType::Utf8), 10).unwrap();
    assert_eq!(decoder.decode(b"ab\ncd").unwrap(), 3);
    let e = decoder.finish().unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: input ends inside a line (2 bytes without a terminating newline; truncated \
         input?): \"cd\""
    );
}

/// Every way of cutting the input in two gives the same batches as decoding it whole.
#[test]
fn split_at_every_byte_gives_identical_batches() {
    let s = schema(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("bytes", DataType::Binary, true),
    ]);
    let input = "1\tJosé 🚀\t-12.50\t2021-03-04 05:06:07.5\t\\\\x00ff\n\
                 2\t\\N\t\\N\t\\N\t\\N\n\
                 3\ttab\\there\\\\\t0\t1969-12-31T23:59:59\t\\\\x\n\
                 4\tline\\\nfeed \\101\\x42\t7.1\t2000-02-29 00:00:00\t\\N\n\
                 5\t东京\t+3\t2021-03-04 05:06:07\t\\\\x41\n"
        .as_bytes();
    let whole = decode_all(Arc::clone(&s), input, 2).unwrap();
    assert_eq!(
        whole.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
        [2, 2, 1]
    );
    for cut in 0..=input.len() {
        let mut decoder = CopyTextDecoder::new(Arc::clone(&s), 2).unwrap();
        let mut batches = Vec::new();
        let used = decoder.decode(&input[..cut]).unwrap();
        assert!(used <= cut);
        while let Some(b) = decoder.next_batch().unwrap() {
            batches.push(b);
        }
        let mut rest = input[used..cut].to_vec();
        rest.extend_from_slice(&input[cut..]);
        assert_eq!(decoder.decode(&rest).unwrap(), rest.len(), "cut at {cut}");
        while let Some(b) = decoder.finish().unwrap() {
            batches.push(b);
        }
        assert_eq!(batches, whole, "cut at {cut}");
    }
    // Byte by byte, carrying the unconsumed part along.
    let mut decoder = CopyTextDecoder::new(Arc::clone(&s), 2).unwrap();
    let mut pending = Vec::new();
    let mut batches = Vec::new();
    for &byte in input {
        pending.push(byte);
        let used = decoder.decode(&pending).unwrap();
        pending.drain(..used);
        while let Some(b) = decoder.next_batch().unwrap() {
            batches.push(b);
        }
    }
    assert!(pending.is_empty());
    while let Some(b) = decoder.finish().unwrap() {
        batches.push(b);
    }
    assert_eq!(batches, whole);
}

#[test]
fn end_of_data_marker() {
    let s = schema(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("b", DataType::Utf8, true),
    ]);
    let batches = decode_all(Arc::clone(&s), b"1\tx\n\\.\nnot\tdata at all\npartial", 10).unwrap();
    assert_eq!(batches[0].num_rows(), 1);
    // Also with a single column, where `\.` would otherwise be a field.
    let batches = decode_all(one(DataType::Utf8), b"x\n\\.\ny\n", 10).unwrap();
    assert_eq!(strings(batches[0].column(0)), [Some("x".to_owned())]);
    // `\.` inside a line is just an escaped dot.
    let batches = decode_all(s, b"1\t\\.\n", 10).unwrap();
    assert_eq!(strings(batches[0].column(1)), [Some(".".to_owned())]);
}

#[test]
fn construction_errors() {
    assert!(matches!(
        CopyTextDecoder::new(one(DataType::Int32), 0),
        Err(CopyTextError::ZeroBatchRows)
    ));
    assert!(matches!(
        CopyTextDecoder::new(schema(vec![]), 10),
        Err(CopyTextError::EmptySchema)
    ));
    for data_type in [
        DataType::Float16,
        DataType::Date64,
        DataType::Timestamp(TimeUnit::Nanosecond, None),
        DataType::Time64(TimeUnit::Nanosecond),
        DataType::Decimal128(39, 0),
        DataType::Decimal128(10, -2),
        DataType::Decimal128(5, 6),
        DataType::Utf8View,
    ] {
        let e = CopyTextDecoder::new(
            schema(vec![Field::new("weird", data_type.clone(), true)]),
            10,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("column `weird` has Arrow type {data_type}, which")),
            "{e}"
        );
    }
    // A huge batch_rows does not pre-allocate.
    assert!(CopyTextDecoder::new(bench_orders_schema(), usize::MAX).is_ok());
}

#[test]
fn bench_orders_sample_line() {
    let line = "1\t3141592\t200\tJosé Müller 🚀\tnote words \"quoted\"\t12345.6789\t\\N\t\
                523.1234567\t2021-03-04 05:06:07\t2021-03-05 01:02:03.123456\t2021-03-06\t1\t\
                {\"sku\":\"SKU-00001\",\"qty\":3}\n";
    let batches = decode_all(bench_orders_schema(), line.as_bytes(), 10).unwrap();
    let b = &batches[0];
    assert_eq!(b.schema(), bench_orders_schema());
    assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(b.column(1).as_primitive::<Int32Type>().value(0), 3_141_592);
    assert_eq!(b.column(2).as_primitive::<Int32Type>().value(0), 200);
    assert_eq!(b.column(3).as_string::<i32>().value(0), "José Müller 🚀");
    assert_eq!(
        b.column(5).as_primitive::<Decimal128Type>().value(0),
        123_456_789
    );
    assert!(b.column(6).is_null(0));
    assert_eq!(
        b.column(7).as_primitive::<Float64Type>().value(0),
        523.1234567
    );
    assert_eq!(
        b.column(9)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_614_906_123_123_456
    );
    assert_eq!(b.column(10).as_primitive::<Date32Type>().value(0), 18692);
    assert!(b.column(11).as_boolean().value(0));
    assert_eq!(
        b.column(12).as_string::<i32>().value(0),
        "{\"sku\":\"SKU-00001\",\"qty\":3}"
    );
}

#[test]
fn reader_chunks_grow_for_long_lines() {
    let s = schema(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, true),
    ]);
    let mut input = Vec::new();
    for i in 0..50 {
        input.extend_from_slice(format!("{i}\t{}\\t\n", "x".repeat(i * 7)).as_bytes());
    }
    let whole = decode_all(Arc::clone(&s), &input, 16).unwrap();
    for chunk in [1, 3, 64, 1 << 20] {
        let mut decoder = CopyTextDecoder::new(Arc::clone(&s), 16).unwrap();
        let mut batches = Vec::new();
        let sink = &mut |b| batches.push(b);
        assert!(decode_reader(&input[..], &mut decoder, chunk, 1 << 20, sink).is_ok());
        assert_eq!(batches, whole, "chunk {chunk}");
    }
    let mut decoder = CopyTextDecoder::new(Arc::clone(&s), 16).unwrap();
    match decode_reader(&input[..], &mut decoder, 8, 64, &mut |_| {}) {
        Err(ReadError::Decode(e @ CopyTextError::LineTooLong { .. })) => {
            assert_eq!(e.to_string(), "line 10: longer than 64 bytes");
        }
        _ => panic!("expected LineTooLong"),
    }
}

#[test]
fn read_file_reads_and_reports_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tsv");
    let input: String = (1..=10).map(|i| format!("{i}\tname {i}\n")).collect();
    std::fs::write(&path, &input).unwrap();
    let s = schema(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]);
    let batches = read_file(&path, Arc::clone(&s), 4).unwrap();
    assert_eq!(
        batches
            .iter()
            .map(RecordBatch::num_rows)
            .collect::<Vec<_>>(),
        [4, 4, 2]
    );

    std::fs::write(&path, "1\tx\n2\ty").unwrap();
    let e = read_file(&path, Arc::clone(&s), 4).unwrap_err();
    assert!(
        matches!(
            e,
            CopyTextError::IncompleteLine {
                line: 2,
                bytes: 3,
                ..
            }
        ),
        "{e}"
    );

    let missing = dir.path().join("missing.tsv");
    let e = read_file(&missing, s, 4).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("reading {}: ", missing.display())),
        "{e}"
    );
}

/// Random bytes from an alphabet of format-significant characters, against every supported
/// type: errors are fine, panics are not, and cutting the input never changes the outcome.
#[test]
fn random_input_never_panics() {
    let all_types = schema(
        [
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt8,
            DataType::UInt16,
            DataType::UInt32,
            DataType::UInt64,
            DataType::Float32,
            DataType::Float64,
            DataType::Decimal128(5, 2),
            DataType::Decimal128(38, 38),
            DataType::Utf8,
            DataType::LargeUtf8,
            DataType::Binary,
            DataType::LargeBinary,
            DataType::Boolean,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Time64(TimeUnit::Microsecond),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("c{i}"), t, i % 2 == 0))
        .collect(),
    );
    const ALPHABET: &[u8] = b"0123456789-+.:  TZ\\\\\t\t\n\nNxXtfey\xff\xc3\x80\r";
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let len = (next() % 64) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        let s = if round % 2 == 0 {
            Arc::clone(&all_types)
        } else {
            one([DataType::Utf8, DataType::Decimal128(3, 1), DataType::Date32][round % 3].clone())
        };
        let whole = CopyTextDecoder::new(Arc::clone(&s), 2)
            .unwrap()
            .decode(&input)
            .map_err(|e| e.to_string());
        let cut = (next() as usize) % (input.len() + 1);
        let mut decoder = CopyTextDecoder::new(s, 2).unwrap();
        let split = decoder.decode(&input[..cut]).and_then(|used| {
            let mut rest = input[used..cut].to_vec();
            rest.extend_from_slice(&input[cut..]);
            decoder.decode(&rest).map(|more| used + more)
        });
        assert_eq!(
            split.map_err(|e| e.to_string()),
            whole,
            "{input:?} cut at {cut}"
        );
        let _ = decoder.finish();
    }
}
