//! Part names: how a writer's `path` (its `${var}`s already substituted by
//! the engine) becomes one file per task.
//!
//! Why: several tasks write at once and none may overwrite another's (or an
//! earlier run's) file, yet a single-task job should be able to write one
//! exact file name. The rules:
//!
//! * a directory — the path ends with `/` or its last component has no `.`
//!   (`lake/ods_raw_log_d/dt=20240620`) — gets `part-00000.<ext>`,
//!   `part-00001.<ext>`, …;
//! * a file name containing `{part}` (`out/orders-{part}.csv`) gets the
//!   5-digit number there;
//! * any other file name (`out/orders.csv`): the first part is that exact
//!   name, further parts get `-00001`, `-00002`, … before the extension
//!   (`orders-00001.csv`).
//!
//! Numbers are handed out per job in order; a number whose file already
//! exists is skipped (`writeMode: append`), so a rerun adds parts instead of
//! replacing them. `writeMode: truncate` first deletes the files that match
//! this naming in the directory (and stale in-progress files of it), and
//! nothing else.

use regex::Regex;

/// The naming rule of one writer `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartNames {
    /// Directory, ending with `/` (or empty).
    pub dir: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir { ext: String },
    Placeholder { before: String, after: String },
    File { stem: String, ext: String },
}

impl PartNames {
    /// `path` inside the location; `ext` the format's extension.
    pub fn new(path: &str, ext: &str) -> Self {
        let (dir, last) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        if last.is_empty() || !last.contains('.') {
            let dir = if last.is_empty() {
                dir.to_string()
            } else {
                format!("{path}/")
            };
            return Self {
                dir,
                kind: Kind::Dir {
                    ext: ext.to_string(),
                },
            };
        }
        let kind = if let Some((before, after)) = last.split_once("{part}") {
            Kind::Placeholder {
                before: before.to_string(),
                after: after.to_string(),
            }
        } else {
            let (stem, ext) = last.rsplit_once('.').unwrap_or((last, ""));
            Kind::File {
                stem: stem.to_string(),
                ext: ext.to_string(),
            }
        };
        Self {
            dir: dir.to_string(),
            kind,
        }
    }

    /// The file name (no directory) of part `n`.
    pub fn name(&self, n: u32) -> String {
        match &self.kind {
            Kind::Dir { ext } => format!("part-{n:05}.{ext}"),
            Kind::Placeholder { before, after } => format!("{before}{n:05}{after}"),
            Kind::File { stem, ext } if n == 0 => format!("{stem}.{ext}"),
            Kind::File { stem, ext } => format!("{stem}-{n:05}.{ext}"),
        }
    }

    /// The full path of part `n`.
    pub fn path(&self, n: u32) -> String {
        format!("{}{}", self.dir, self.name(n))
    }

    /// Whether `name` (no directory) is one of this naming's parts, or an
    /// in-progress file of one.
    pub fn matches(&self, name: &str) -> bool {
        let re = |s: String| Regex::new(&s).map(|r| r.is_match(name)).unwrap_or(false);
        let e = |s: &str| regex::escape(s);
        let part = match &self.kind {
            Kind::Dir { ext } => format!(r"part-\d{{5,}}\.{}", e(ext)),
            Kind::Placeholder { before, after } => format!(r"{}\d{{5,}}{}", e(before), e(after)),
            Kind::File { stem, ext } => format!(r"{}(?:-\d{{5,}})?\.{}", e(stem), e(ext)),
        };
        re(format!("^{part}$")) || re(format!(r"^\.{part}\.inprogress-[0-9a-f]+$"))
    }
}

/// The hidden name a part is written under until it is complete.
pub fn in_progress(dir: &str, name: &str, token: u64) -> String {
    format!("{dir}.{name}.inprogress-{token:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_rules() {
        let d = PartNames::new("lake/t/dt=20240620", "parquet");
        assert_eq!(d.path(0), "lake/t/dt=20240620/part-00000.parquet");
        assert_eq!(d.path(12), "lake/t/dt=20240620/part-00012.parquet");
        assert!(d.matches("part-00003.parquet") && !d.matches("part-00003.csv"));
        assert!(d.matches(".part-00003.parquet.inprogress-00000000000000ab"));
        assert!(!d.matches("notes.txt"));
        let f = PartNames::new("out/orders.csv", "csv");
        assert_eq!(
            (f.path(0).as_str(), f.path(2).as_str()),
            ("out/orders.csv", "out/orders-00002.csv")
        );
        assert!(
            f.matches("orders.csv") && f.matches("orders-00002.csv") && !f.matches("orders2.csv")
        );
        let p = PartNames::new("o/x-{part}.jsonl", "jsonl");
        assert_eq!(p.path(1), "o/x-00001.jsonl");
        assert_eq!(PartNames::new("o/", "csv").path(0), "o/part-00000.csv");
    }
}
