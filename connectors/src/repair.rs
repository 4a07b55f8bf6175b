//! `ferry verify --repair`: deleting target rows by key before the source's rows are copied
//! again.
//!
//! Keys arrive as text (how verification renders them) and are compared with each key
//! column cast to text, as bound parameters: no value becomes SQL. Casting to text keeps the
//! comparison exact for the key types repair accepts (integers, decimals, text); an index is
//! not used, which a repair of a handful of rows can afford.

/// Keys per `DELETE` statement.
pub const KEYS_PER_STATEMENT: usize = 500;

/// `DELETE FROM {table} WHERE (k0 = ? AND k1 = ?) OR (…)` for `keys` keys, each key column
/// as `cast(column)`, parameters as `param(n)` (1-based).
pub fn delete_sql(
    table: &str,
    columns: &[String],
    keys: usize,
    cast: impl Fn(&str) -> String,
    param: impl Fn(usize) -> String,
) -> String {
    let mut n = 0;
    let one = |n: &mut usize| {
        let parts: Vec<String> = columns
            .iter()
            .map(|c| {
                *n += 1;
                format!("{} = {}", cast(c), param(*n))
            })
            .collect();
        format!("({})", parts.join(" AND "))
    };
    let all: Vec<String> = (0..keys).map(|_| one(&mut n)).collect();
    format!("DELETE FROM {table} WHERE {}", all.join(" OR "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_parameter_per_key_column() {
        let sql = super::delete_sql(
            "t",
            &["a".into(), "b".into()],
            2,
            |c| format!("CAST({c} AS TEXT)"),
            |n| format!("${n}"),
        );
        assert_eq!(
            sql,
            "DELETE FROM t WHERE (CAST(a AS TEXT) = $1 AND CAST(b AS TEXT) = $2) OR (CAST(a AS TEXT) = $3 AND CAST(b AS TEXT) = $4)"
        );
    }
}
