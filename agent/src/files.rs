//! File sources: which paths a split may name.
//!
//! A file split carries one path. Towards the broker it is relative to the
//! source's directory, so a plan reply never shows the agent's own paths.
//! Coming back in a task it is only read when it is a path the agent
//! listed itself for that job (the listing is kept per job, and made again
//! when a task arrives at an agent that did not plan it); the connector
//! then refuses a real path (symlinks followed) outside the source's
//! directory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferry_connectors::file::location::{Location, StorageOptions};
use ferry_connectors::{Split, SplitBounds};

/// Jobs whose listings are kept at once; the oldest goes first.
const KEPT_LISTINGS: usize = 64;

/// The directory of a file source, as the connector's paths start.
#[derive(Debug, Clone)]
pub struct FileRoot {
    /// Ends in `/`, or is empty.
    prefix: String,
}

impl FileRoot {
    /// The root of the source at `url` (the agent's config, not a job).
    pub fn of(url: &str) -> Result<Self, String> {
        let loc = Location::open(url, &StorageOptions::default())
            .map_err(|e| format!("the source's location: {e}"))?;
        Ok(Self {
            prefix: loc.base_dir(),
        })
    }

    /// `splits` with each file path made relative to the root. A path the
    /// connector listed outside the root is an error (it cannot happen
    /// without a bug: the job's location is inside it).
    pub fn relative(&self, splits: Vec<Split>) -> Result<Vec<Split>, String> {
        splits
            .into_iter()
            .map(|mut s| {
                if let SplitBounds::File { path } = &mut s.bounds {
                    let rel = path.strip_prefix(&self.prefix).ok_or_else(|| {
                        "a listed file is outside the data source's directory".to_string()
                    })?;
                    *path = rel.to_string();
                }
                Ok(s)
            })
            .collect()
    }

    /// The connector's path of `rel`, a relative path from a split.
    pub fn full(&self, rel: &str) -> Result<String, String> {
        check_relative(rel)?;
        Ok(format!("{}{rel}", self.prefix))
    }
}

/// A relative path from the broker: no absolute path, no URL, no `..` or
/// `.` component, no empty component, no NUL or backslash.
fn check_relative(rel: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("file path `{}` refused: {why}", shorten(rel)));
    if rel.is_empty() {
        return refuse("empty");
    }
    if rel.starts_with('/') || rel.contains("://") {
        return refuse("not relative to the data source");
    }
    if rel.contains(['\0', '\\']) {
        return refuse("NUL or backslash");
    }
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return refuse("an empty, `.` or `..` component");
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// The relative paths the agent listed, per job (its data source, options
/// and read spec as the broker sent them).
#[derive(Default)]
pub struct Listings {
    inner: Mutex<Kept>,
}

/// Listings by job, and the jobs oldest first.
type Kept = (HashMap<String, Arc<HashSet<String>>>, Vec<String>);

impl Listings {
    /// Remembers the paths of `splits` (already relative) for `job`.
    pub fn remember(&self, job: &str, splits: &[Split]) {
        let paths: HashSet<String> = splits
            .iter()
            .filter_map(|s| match &s.bounds {
                SplitBounds::File { path } => Some(path.clone()),
                _ => None,
            })
            .collect();
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(job.to_string(), Arc::new(paths)).is_none() {
            order.push(job.to_string());
        }
        while order.len() > KEPT_LISTINGS {
            let oldest = order.remove(0);
            map.remove(&oldest);
        }
    }

    /// Whether `rel` was listed for `job`; `None` when the job's listing is
    /// not known here (planned by another agent, or forgotten).
    pub fn listed(&self, job: &str, rel: &str) -> Option<bool> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.get(job).map(|set| set.contains(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_split(path: &str) -> Split {
        Split::whole(SplitBounds::File { path: path.into() })
    }

    #[test]
    fn paths_travel_relative_and_come_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let root = FileRoot::of(&dir.path().to_string_lossy()).unwrap();
        let abs = format!(
            "{}/a/x.csv",
            dir.path().to_string_lossy().trim_start_matches('/')
        );
        let rel = root.relative(vec![file_split(&abs)]).unwrap();
        assert_eq!(
            rel[0].bounds,
            SplitBounds::File {
                path: "a/x.csv".into()
            }
        );
        assert!(root.relative(vec![file_split("etc/passwd")]).is_err());
        assert_eq!(root.full("a/x.csv").unwrap(), abs);
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./x",
            "s3://b/x",
            "a\\..\\b",
        ] {
            assert!(root.full(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listings_are_per_job_and_bounded() {
        let l = Listings::default();
        l.remember("j1", &[file_split("a.csv")]);
        assert_eq!(l.listed("j1", "a.csv"), Some(true));
        assert_eq!(l.listed("j1", "b.csv"), Some(false));
        assert_eq!(l.listed("j2", "a.csv"), None);
        for i in 0..KEPT_LISTINGS + 5 {
            l.remember(&format!("k{i}"), &[]);
        }
        assert_eq!(l.listed("j1", "a.csv"), None);
    }
}
