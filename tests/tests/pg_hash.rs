//! `ferry_fingerprint::pg` against a real PostgreSQL: every hash it computes equals the one
//! the server computes for the same value and seed, and the jsonb text it renders equals the
//! server's `doc::jsonb::text`, over edge values and a few thousand generated ones.

use ferry_fingerprint::pg;
use ferry_tests::db::{pg_url, psql};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEEDS: &[u64] = &[0, 1, 0xFFFF_FFFF, 0x1234_5678_9abc_def0, u64::MAX];

/// The server's answer to `sql`, one line per row; `None` to skip when there is no server
/// (outside CI).
fn server(sql: &str) -> Option<Vec<String>> {
    match psql(sql, None) {
        Ok(out) => Some(out.lines().map(str::to_string).collect()),
        Err(e) if e.contains("connection") || e.contains("cannot run") => {
            ferry_tests::missing(&format!("PostgreSQL at {}: {e}", pg_url()));
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Compares `ours[i]` with the server's `f(args[i])` for every case, in one query.
fn compare(cases: &[(String, u64)], call: &str, ours: &[u64]) -> bool {
    let values = cases
        .iter()
        .enumerate()
        .map(|(i, (arg, seed))| format!("({i}, {arg}, {}::int8)", *seed as i64))
        .collect::<Vec<_>>()
        .join(",\n");
    let sql = format!("SELECT {call} FROM (VALUES {values}) AS v(n, x, s) ORDER BY n");
    let Some(theirs) = server(&sql) else {
        return false;
    };
    assert_eq!(theirs.len(), cases.len(), "{call}: rows");
    let mut wrong = Vec::new();
    for ((case, mine), line) in cases.iter().zip(ours).zip(&theirs) {
        let theirs: i64 = line.trim().parse().expect("an int8");
        if theirs as u64 != *mine {
            wrong.push(format!(
                "{call} of {case:?}: server {theirs}, ours {}",
                *mine as i64
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
    true
}

fn with_seeds<T: Clone>(values: &[T]) -> Vec<(T, u64)> {
    values
        .iter()
        .flat_map(|v| SEEDS.iter().map(move |s| (v.clone(), *s)))
        .collect()
}

fn random_text(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "a", "Z", "0", " ", "'", "\"", "\\", "é", "急", "🚀", "\n", "\t", "ß",
    ];
    let n = rng.random_range(0..40);
    (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

#[test]
fn text_hashes_as_postgresql_hashes_it() {
    let mut rng = StdRng::seed_from_u64(17);
    let mut texts: Vec<String> = (0..=30).map(|n| "x".repeat(n)).collect();
    texts.extend((0..200).map(|_| random_text(&mut rng)));
    let cases = with_seeds(&texts);
    let ours: Vec<u64> = cases
        .iter()
        .map(|(t, s)| pg::hash_bytes(t.as_bytes(), *s))
        .collect();
    let args: Vec<(String, u64)> = cases
        .iter()
        .map(|(t, s)| (format!("{}::text", lit(t)), *s))
        .collect();
    compare(&args, "hashtextextended(x, s)", &ours);
}

#[test]
fn integers_hash_as_postgresql_hashes_them() {
    let mut rng = StdRng::seed_from_u64(18);
    let mut ints: Vec<i64> = vec![
        0,
        1,
        -1,
        2,
        i64::from(i32::MAX),
        i64::from(i32::MIN),
        i64::from(i32::MAX) + 1,
        i64::from(i32::MIN) - 1,
        i64::MAX,
        i64::MIN,
        1 << 32,
        -(1 << 32),
    ];
    ints.extend((0..100).map(|_| rng.random::<i64>()));
    ints.extend((0..100).map(|_| i64::from(rng.random::<i32>())));
    let cases = with_seeds(&ints);
    let ours: Vec<u64> = cases.iter().map(|(v, s)| pg::hash_i64(*v, *s)).collect();
    let args: Vec<(String, u64)> = cases
        .iter()
        .map(|(v, s)| (format!("'{v}'::int8"), *s))
        .collect();
    if !compare(&args, "hashint8extended(x, s)", &ours) {
        return;
    }
    // A value in the 32-bit range hashes alike as an int4.
    let small: Vec<(String, u64)> = cases
        .iter()
        .filter(|(v, _)| i32::try_from(*v).is_ok())
        .map(|(v, s)| (format!("'{v}'::int4"), *s))
        .collect();
    let ours: Vec<u64> = cases
        .iter()
        .filter(|(v, _)| i32::try_from(*v).is_ok())
        .map(|(v, s)| pg::hash_u32(*v as i32 as u32, *s))
        .collect();
    compare(&small, "hashint4extended(x, s)", &ours);
}

#[test]
fn floats_hash_as_postgresql_hashes_them() {
    let mut rng = StdRng::seed_from_u64(19);
    let mut floats: Vec<f64> = vec![
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1,
        1e300,
        -1e-300,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        5e-324,
    ];
    floats.extend(
        (0..150)
            .map(|_| f64::from_bits(rng.random::<u64>()))
            .filter(|f| f.is_finite()),
    );
    let cases = with_seeds(&floats);
    let ours: Vec<u64> = cases.iter().map(|(v, s)| pg::hash_f64(*v, *s)).collect();
    let text = |v: f64| {
        if v.is_nan() {
            "'NaN'".to_string()
        } else if v.is_infinite() {
            if v > 0.0 {
                "'Infinity'".into()
            } else {
                "'-Infinity'".into()
            }
        } else {
            format!("'{v:?}'")
        }
    };
    let args: Vec<(String, u64)> = cases
        .iter()
        .map(|(v, s)| (format!("{}::float8", text(*v)), *s))
        .collect();
    compare(&args, "hashfloat8extended(x, s)", &ours);
}

/// `mantissa` × 10^-`scale` as decimal text.
fn decimal(mantissa: i128, scale: u32) -> String {
    let digits = format!(
        "{:0>width$}",
        mantissa.unsigned_abs(),
        width = scale as usize + 1
    );
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    let sign = if mantissa < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

#[test]
fn decimals_hash_as_postgresql_hashes_them() {
    let mut rng = StdRng::seed_from_u64(20);
    let mut nums: Vec<(i128, u32)> = vec![
        (0, 0),
        (0, 4),
        (1, 0),
        (-1, 0),
        (15, 1),
        (150, 2),
        (5, 2),
        (10000, 0),
        (10000, 4),
        (1, 20),
        (i128::MAX, 0),
        (i128::MIN + 1, 10),
        (123_456_789, 4),
        (-99_990_000, 8),
        (1_000_000_000_000, 12),
    ];
    for _ in 0..300 {
        let digits = rng.random_range(1..=38u32);
        let m =
            rng.random_range(0..10i128.pow(digits - 1).max(2)) * if rng.random() { 1 } else { -1 };
        // Trailing zeros on purpose, now and then.
        let m = if rng.random_ratio(1, 4) {
            m.saturating_mul(1000)
        } else {
            m
        };
        nums.push((m, rng.random_range(0..=20)));
    }
    let cases = with_seeds(&nums);
    let ours: Vec<u64> = cases
        .iter()
        .map(|((m, sc), s)| pg::hash_numeric(*m, *sc as i8, *s))
        .collect();
    let args: Vec<(String, u64)> = cases
        .iter()
        .map(|((m, sc), s)| (format!("{}::numeric", lit(&decimal(*m, *sc))), *s))
        .collect();
    compare(&args, "hash_numeric_extended(x, s)", &ours);
}

/// A random JSON document (valid), written with varied spacing, escapes and number forms.
fn random_json(rng: &mut StdRng, depth: u32, out: &mut String) {
    let ws = |rng: &mut StdRng, out: &mut String| {
        if rng.random_ratio(1, 3) {
            out.push_str([" ", "\n", "\t ", "\r\n"][rng.random_range(0..4)]);
        }
    };
    ws(rng, out);
    let pick = if depth > 3 {
        rng.random_range(0..6)
    } else {
        rng.random_range(0..8)
    };
    match pick {
        0 => out.push_str("null"),
        1 => out.push_str(if rng.random() { "true" } else { "false" }),
        2 | 3 => {
            const NUMS: &[&str] = &[
                "0",
                "-0",
                "1",
                "-1",
                "1.0",
                "1.50",
                "0.001",
                "-0.000",
                "1e2",
                "1E+2",
                "1.5e-3",
                "12.34e1",
                "123456789012345678901234567890",
                "9.999e-7",
                "-42.4200",
                "7e0",
                "0e10",
                "3.14159",
                "100",
                "1e-20",
                "2.5E3",
            ];
            out.push_str(NUMS[rng.random_range(0..NUMS.len())]);
        }
        4 | 5 => {
            const STRS: &[&str] = &[
                r#""""#,
                r#""a""#,
                r#""é""#,
                r#""\u00e9""#,
                r#""\n\t\r\b\f""#,
                r#""\"\\\/""#,
                r#""\u001f""#,
                r#""\ud83d\ude80""#,
                r#""🚀 急""#,
                r#""\u007f""#,
                r#""k""#,
                r#""kk""#,
                r#""b""#,
            ];
            out.push_str(STRS[rng.random_range(0..STRS.len())]);
        }
        6 => {
            out.push('[');
            let n = rng.random_range(0..4);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                random_json(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push(']');
        }
        _ => {
            out.push('{');
            const KEYS: &[&str] = &["a", "b", "aa", "ab", "B", "é", "", "key", "k\\n", "zz", "a"];
            let n = rng.random_range(0..5);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                out.push('"');
                out.push_str(KEYS[rng.random_range(0..KEYS.len())]);
                out.push('"');
                ws(rng, out);
                out.push(':');
                random_json(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push('}');
        }
    }
    ws(rng, out);
}

#[test]
fn jsonb_text_is_what_postgresql_keeps() {
    let mut rng = StdRng::seed_from_u64(21);
    let mut docs: Vec<String> = [
        r#"{"sku":"SKU-25109","qty":9,"channel":"web","gift":false,"tags":["intl","急"],"score":82.8}"#,
        r#"{"b": 1, "a": 2, "b": 3}"#,
        r#"{"aaa": 1, "b": 2, "aa": 3, "B": 4}"#,
        "[]",
        "{}",
        r#""plain""#,
        "1e1000",
        "-1e-1000",
        "1e1001",
        "0e2000000",
        "-0.0e-5",
        "9e131071",
        "1e-16383",
        "[[[]]]",
        r#"{"x": {"y": {"x": [1, {"x": null}]}}}"#,
        r#""\u0001\u001F""#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..1500 {
        let mut s = String::new();
        random_json(&mut rng, 0, &mut s);
        docs.push(s);
    }
    let ours: Vec<String> = docs
        .iter()
        .map(|d| pg::jsonb_text(d).unwrap_or_else(|| panic!("ours refused {d:?}")))
        .collect();
    let values = docs
        .iter()
        .enumerate()
        .map(|(i, d)| format!("({i}, {})", lit(d)))
        .collect::<Vec<_>>()
        .join(",\n");
    // One document per line: newlines inside strings print escaped, so lines do not split.
    let Some(theirs) = server(&format!(
        "SELECT x::jsonb::text FROM (VALUES {values}) AS v(n, x) ORDER BY n"
    )) else {
        return;
    };
    assert_eq!(theirs.len(), docs.len());
    let wrong: Vec<String> = docs
        .iter()
        .zip(&ours)
        .zip(&theirs)
        .filter(|((_, o), t)| o != t)
        .map(|((d, o), t)| format!("{d:?}: server {t:?}, ours {o:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} differ:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );

    // What jsonb refuses, this refuses too.
    for bad in [
        r#""\u0000""#,
        r#""\ud800""#,
        r#""\udc00x""#,
        "1.5e-16383",
        "1e131072",
        "0e1073741823",
        "01",
        "[1,]",
        "{\"a\" 1}",
    ] {
        assert_eq!(pg::jsonb_text(bad), None, "{bad}");
        assert!(
            psql(&format!("SELECT {}::jsonb", lit(bad)), None).is_err(),
            "the server took {bad}"
        );
    }
}

/// Every column type the PostgreSQL verification scheme covers, with edge values and NULLs:
/// the bucket sums the server computes (`bucket_sums`, one aggregate) equal those this
/// process computes over the same rows as the connector reads them, column by column, for
/// whole rows, and without a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_bucket_sums_equal_those_hashed_here() {
    use ferry_connectors::postgres::PostgresSource;
    use ferry_connectors::{ReadSpec, Source};
    use ferry_model::{Scheme, VerifyAsk, VerifyPass};

    let Some(s) = ferry_tests::db::PgSchema::new("ferry_pghash") else {
        return;
    };
    s.sql(&format!(
        "CREATE TYPE {0}.mood AS ENUM ('sad', 'ok', 'ünïcode');
         CREATE TABLE {0}.t (id int8 PRIMARY KEY, i2 int2, i4 int4, n numeric, n2 numeric(12,3),
           f4 float4, f8 float8, tx text, vc varchar(10) COLLATE \"C\", u uuid, j json, jb jsonb,
           b bytea, bo bool, d date, tm time, ts timestamp, tz timestamptz, iv interval,
           m {0}.mood);
         INSERT INTO {0}.t (id) VALUES (0);
         INSERT INTO {0}.t SELECT g, (g % 32000 - 16000)::int2, g * 7919 - 2000000000,
           ((g * 12345.6789 - 1e6)::numeric * 10::numeric ^ (g % 50 - 20))::numeric,
           (g * 1.001 - 1500)::numeric(12,3), g / 7.0, g * 1.1e-3 - 0.5,
           CASE WHEN g % 13 = 0 THEN '' ELSE 'x' || g || repeat('é', g % 5) || ' ' END,
           left(md5(g::text), g % 11), md5(g::text)::uuid,
           json_build_object('b', g, 'a', array[g, g * 2], 'x', g / 3.0),
           json_build_object('k' || (g % 7), g * 1.5, 'n', null, 's', 'q\"\\' || g)::jsonb,
           CASE WHEN g % 17 = 0 THEN ''::bytea ELSE decode(md5(g::text), 'hex') END,
           g % 2 = 0, date '2000-01-01' + (g - 1500) * 7,
           time '00:00' + g * interval '17.123457 seconds',
           timestamp '1970-01-01' + g * interval '1 day 1.000001 seconds',
           timestamptz '1999-12-31 23:00:00+00' + g * interval '37 minutes 0.5 seconds',
           make_interval(years => g % 3, months => g % 14 - 7, days => g % 40,
                         secs => g * 1.5 - 2000),
           (ARRAY['sad', 'ok', 'ünïcode'])[g % 3 + 1]::{0}.mood
         FROM generate_series(1, 3000) g;
         INSERT INTO {0}.t (id, n, f4, f8, j, jb) VALUES
           (5001, 'NaN', 'NaN', '-0', '{{\"a\": 1, \"a\": 2, \"e\": 1.50e1}}', '[1e-3, -0.0, \"\\u00e9\"]'),
           (5002, '0.000', '-0', 'Infinity', '[]', '{{}}'),
           (5003, '-1e-40', '1e-40', '-1e300', 'null', '\"x\"');",
        s.name
    ));
    let src = PostgresSource::connect(&ferry_tests::db::pg_url())
        .await
        .expect("PostgreSQL");
    let table = format!("{}.t", s.name);
    let all = ReadSpec {
        table: Some(table.clone()),
        fetch_size: 1000,
        ..Default::default()
    };
    let names: Vec<String> = src
        .schema(&all)
        .await
        .unwrap()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    // One column at a time (with the key), then whole rows, then rows without a key.
    let mut reads: Vec<(Vec<String>, Vec<String>)> = names[1..]
        .iter()
        .map(|c| (vec!["id".to_string(), c.clone()], vec!["id".to_string()]))
        .collect();
    reads.push((Vec::new(), vec!["id".to_string()]));
    reads.push((Vec::new(), Vec::new()));
    for (columns, key) in reads {
        let spec = ReadSpec {
            columns: columns.clone(),
            ..all.clone()
        };
        let kinds = src
            .hash_kinds(&spec)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{columns:?}: every type is covered"));
        let schema = src.schema(&spec).await.unwrap();
        let ask = VerifyAsk {
            key: key.clone(),
            buckets: 64,
            text_as: Vec::new(),
            scheme: Scheme::Postgres(kinds),
            pass: VerifyPass::Buckets,
        };
        let mut server = Vec::new();
        let mut here = ferry_fingerprint::BucketTotals::new(64);
        for split in src.plan(&spec, 3).await.unwrap() {
            let sums = src.bucket_sums(&spec, &split, &ask).await.unwrap();
            server.extend(sums.expect("summed in the database"));
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let read = {
                let (src, spec, schema, split) = (src.clone(), spec.clone(), schema.clone(), split);
                tokio::spawn(async move { src.read(&spec, schema, &split, tx).await })
            };
            let mut d = ferry_fingerprint::Digester::new(&schema, &ask).unwrap();
            while let Some(b) = rx.recv().await {
                assert!(d.feed(&b).unwrap().is_none());
            }
            read.await.unwrap().unwrap();
            here.add(&d.finish().unwrap().unwrap()).unwrap();
        }
        let mut theirs = ferry_fingerprint::BucketTotals::new(64);
        theirs
            .add(&ferry_fingerprint::bucket_batch(&server).unwrap())
            .unwrap();
        assert_eq!(theirs.rows, 3004, "{columns:?}");
        assert_eq!(
            theirs.differing(&here),
            Vec::<u32>::new(),
            "{columns:?} (key {key:?}): the server's sums differ from ours"
        );
    }
}
