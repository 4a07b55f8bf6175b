//! Comparing the row digests of both sides: which keys are missing, extra, duplicated or
//! changed, and in which columns.

use std::collections::BTreeMap;

use crate::digest::RowDigest;

/// How a row differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffKind {
    /// In the source, not in the target.
    Missing,
    /// In the target, not in the source.
    Extra,
    /// In the target more often than in the source.
    Duplicated,
    /// In both, with these columns (by read position) different.
    Changed { columns: Vec<usize> },
}

impl DiffKind {
    pub fn label(&self) -> &'static str {
        match self {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Duplicated => "duplicated",
            DiffKind::Changed { .. } => "changed",
        }
    }
}

/// One differing row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDiff {
    pub key_hash: u64,
    pub key: String,
    pub kind: DiffKind,
    /// The key's values as the target reads them, when the target has the row.
    pub target_key: Option<Vec<Option<String>>>,
}

/// The differences between the rows of the same buckets on both sides, ordered by key.
pub fn diff_rows(source: Vec<RowDigest>, target: Vec<RowDigest>) -> Vec<RowDiff> {
    let mut by_key: BTreeMap<u64, (Vec<RowDigest>, Vec<RowDigest>)> = BTreeMap::new();
    for r in source {
        by_key.entry(r.key_hash).or_default().0.push(r);
    }
    for r in target {
        by_key.entry(r.key_hash).or_default().1.push(r);
    }
    let mut out = Vec::new();
    for (key_hash, (mut src, mut dst)) in by_key {
        let source_rows: Vec<u64> = src.iter().map(|r| r.row_hash).collect();
        // Rows alike on both sides cancel out.
        src.retain(
            |s| match dst.iter().position(|d| d.row_hash == s.row_hash) {
                Some(i) => {
                    dst.swap_remove(i);
                    false
                }
                None => true,
            },
        );
        // A target row equal to a source row it was already matched with is a second copy.
        let (dups, mut dst): (Vec<_>, Vec<_>) = dst
            .into_iter()
            .partition(|d| source_rows.contains(&d.row_hash));
        for d in dups {
            out.push(RowDiff {
                key_hash,
                key: d.key,
                kind: DiffKind::Duplicated,
                target_key: Some(d.key_values),
            });
        }
        dst.reverse();
        for s in src {
            let (kind, target_key) = match dst.pop() {
                Some(d) => (
                    DiffKind::Changed {
                        columns: s
                            .columns
                            .iter()
                            .zip(&d.columns)
                            .enumerate()
                            .filter(|(_, (a, b))| a != b)
                            .map(|(i, _)| i)
                            .collect(),
                    },
                    Some(d.key_values),
                ),
                None => (DiffKind::Missing, None),
            };
            out.push(RowDiff {
                key_hash,
                key: s.key,
                kind,
                target_key,
            });
        }
        for d in dst {
            out.push(RowDiff {
                key_hash,
                key: d.key,
                kind: DiffKind::Extra,
                target_key: Some(d.key_values),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key).then(a.key_hash.cmp(&b.key_hash)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: u64, row: u64, cols: &[u64]) -> RowDigest {
        RowDigest {
            key_hash: key,
            key: key.to_string(),
            key_values: vec![Some(key.to_string())],
            row_hash: row,
            columns: cols.to_vec(),
        }
    }

    #[test]
    fn each_kind_is_named() {
        let src = vec![
            row(1, 10, &[1, 2]),
            row(2, 20, &[3, 4]),
            row(3, 30, &[5, 6]),
        ];
        let dst = vec![
            row(1, 10, &[1, 2]),
            row(1, 10, &[1, 2]),
            row(2, 21, &[3, 9]),
            row(4, 40, &[7, 8]),
        ];
        let d = diff_rows(src, dst);
        assert!(d
            .iter()
            .all(|r| r.target_key.is_some() == (r.kind != DiffKind::Missing)));
        let kinds: Vec<(String, DiffKind)> = d.into_iter().map(|r| (r.key, r.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("1".into(), DiffKind::Duplicated),
                ("2".into(), DiffKind::Changed { columns: vec![1] }),
                ("3".into(), DiffKind::Missing),
                ("4".into(), DiffKind::Extra),
            ]
        );
    }
}
