//! Where files are: a URL or a path, turned into an opendal [`Operator`] and
//! a path (with an optional glob in its last component) inside it.
//!
//! Why opendal: one reader/writer code path for local disks, S3-compatible
//! stores and plain HTTP. Built without OpenSSL (rustls through reqwest, with
//! the workspace's `ring` provider).
//!
//! * `file:///abs/dir/x.csv` or a plain path (relative to the working
//!   directory) → the `fs` service, root `/`;
//! * `s3://bucket/prefix/...` → the `s3` service; options `endpoint`,
//!   `region` (default `us-east-1`), `accessKey`/`secretKey` (default: the
//!   environment's `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`; none at all:
//!   anonymous). Path-style addressing (`endpoint/bucket/key`), which is what
//!   MinIO, moto and most S3-compatible stores expect;
//! * `http://` / `https://` → the `http` service: read only, single files
//!   only (HTTP cannot list).

use opendal::{ErrorKind, Operator};

use crate::error::ConnectorError;

/// Storage options (`endpoint`, `region`, `accessKey`, `secretKey`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageOptions {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

/// Which service a location is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Fs,
    S3,
    Http,
}

/// An opened location.
#[derive(Clone)]
pub struct Location {
    pub op: Operator,
    pub scheme: Scheme,
    /// The path inside the operator, without a leading `/`.
    pub path: String,
    /// The URL as given (for messages).
    pub display: String,
    /// Local disks only: the canonical directory every file read must
    /// resolve into (symlinks followed), when confined by [`Location::confine`].
    confine: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("scheme", &self.scheme)
            .field("path", &self.path)
            .field("display", &self.display)
            .field("confine", &self.confine)
            .finish()
    }
}

fn install_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // First one wins; another part of the process may have installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal::init_default_registry();
        opendal::HttpTransporter::install_default(
            opendal_http_transport_reqwest::ReqwestTransport::default(),
        );
    });
}

pub(crate) fn storage_error(what: impl std::fmt::Display, e: opendal::Error) -> ConnectorError {
    if e.kind() == ErrorKind::NotFound {
        return ConnectorError::File {
            path: what.to_string(),
            line: None,
            message: "not found".into(),
        };
    }
    ConnectorError::Storage {
        what: what.to_string(),
        message: e.to_string(),
    }
}

impl Location {
    /// Opens `url` (see the module docs).
    pub fn open(url: &str, opts: &StorageOptions) -> Result<Self, ConnectorError> {
        install_once();
        let url = url.trim();
        if url.is_empty() {
            return Err(ConnectorError::config("path", "missing"));
        }
        let bad = |e: opendal::Error| ConnectorError::config("path", format!("`{url}`: {e}"));
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ConnectorError::config(
                    "path",
                    format!("`{url}`: no bucket (s3://bucket/prefix/...)"),
                ));
            }
            let mut b = opendal::services::S3::default()
                .bucket(bucket)
                .root("/")
                .region(opts.region.as_deref().unwrap_or("us-east-1"))
                .disable_config_load()
                .disable_ec2_metadata();
            if let Some(ep) = &opts.endpoint {
                b = b.endpoint(ep);
            }
            let ak = opts
                .access_key
                .clone()
                .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
            let sk = opts
                .secret_key
                .clone()
                .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
            match (ak, sk) {
                (Some(ak), Some(sk)) => {
                    b = b.access_key_id(&ak).secret_access_key(&sk);
                }
                (None, None) => b = b.skip_signature(),
                _ => {
                    return Err(ConnectorError::config(
                        "accessKey",
                        "give both accessKey and secretKey (or both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                    ))
                }
            }
            let op = Operator::new(b).map_err(bad)?;
            return Ok(Self {
                op,
                scheme: Scheme::S3,
                path: path.to_string(),
                display: url.to_string(),
                confine: None,
            });
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let b = opendal::services::Http::default()
                .endpoint(&format!("{scheme}://{host}"))
                .root("/");
            let op = Operator::new(b).map_err(bad)?;
            return Ok(Self {
                op,
                scheme: Scheme::Http,
                path: path.to_string(),
                display: url.to_string(),
                confine: None,
            });
        }
        let local = match url.strip_prefix("file://") {
            Some(p) if p.starts_with('/') => std::path::PathBuf::from(p),
            Some(p) => {
                return Err(ConnectorError::config(
                    "path",
                    format!("`{url}`: a file:// URL needs an absolute path (file:///{p})"),
                ))
            }
            None if url.contains("://") => {
                return Err(ConnectorError::config(
                    "path",
                    format!("`{url}`: unknown scheme; known: file://, s3://, http://, https://, or a plain path"),
                ))
            }
            None => {
                let p = std::path::PathBuf::from(url);
                if p.is_absolute() {
                    p
                } else {
                    std::env::current_dir()?.join(p)
                }
            }
        };
        let mut path = local.to_string_lossy().trim_start_matches('/').to_string();
        if url.ends_with('/') && !path.ends_with('/') {
            path.push('/');
        }
        let op = Operator::new(opendal::services::Fs::default().root("/")).map_err(bad)?;
        Ok(Self {
            op,
            scheme: Scheme::Fs,
            path,
            display: url.to_string(),
            confine: None,
        })
    }

    /// The directory this location's files are listed from, as a path
    /// inside the operator ending in `/` (empty: the operator's root): the
    /// location itself when it names a directory or prefix, else the
    /// directory of the file or glob it names.
    pub fn base_dir(&self) -> String {
        let path = self.path.as_str();
        let is_dir = path.is_empty()
            || path.ends_with('/')
            || (self.scheme == Scheme::Fs && std::path::Path::new(&format!("/{path}")).is_dir());
        if is_dir {
            if path.is_empty() || path.ends_with('/') {
                path.to_string()
            } else {
                format!("{path}/")
            }
        } else {
            path.rfind('/')
                .map(|i| path[..=i].to_string())
                .unwrap_or_default()
        }
    }

    /// Confines a local location to the directory `root` (a path or
    /// `file://` URL): files whose real path (symlinks followed) is not
    /// inside it are not listed, and reading one is refused. The location
    /// itself must resolve inside `root`. Not for S3 or HTTP (no symlinks;
    /// their paths are checked by name).
    pub fn confine(&mut self, root: &str) -> Result<(), ConnectorError> {
        if self.scheme != Scheme::Fs {
            return Ok(());
        }
        let root = root.strip_prefix("file://").unwrap_or(root);
        let canonical = std::fs::canonicalize(root)
            .map_err(|e| ConnectorError::config("path", format!("the source's directory: {e}")))?;
        self.confine = Some(canonical);
        // The location's own directory (the part before a glob) must be
        // inside too, as far as it exists.
        let own = format!("/{}", self.base_dir());
        let mut probe = std::path::PathBuf::from(own);
        while !probe.exists() {
            if !probe.pop() {
                break;
            }
        }
        self.check_inside(&probe.to_string_lossy())
    }

    /// Refuses `path` (inside the operator) when this location is confined
    /// and its real path leaves the confining directory.
    pub fn check_inside(&self, path: &str) -> Result<(), ConnectorError> {
        let Some(root) = &self.confine else {
            return Ok(());
        };
        let full = std::path::PathBuf::from(format!("/{}", path.trim_start_matches('/')));
        let real = std::fs::canonicalize(&full)
            .map_err(|e| ConnectorError::file(path.to_string(), None, e.to_string()))?;
        if real.starts_with(root) {
            Ok(())
        } else {
            // No path in the message: it goes to the broker.
            Err(ConnectorError::config(
                "path",
                "a file resolves outside the data source's directory (a symlink leaving it?)",
            ))
        }
    }

    /// Lists the files `path` names: one file, every file under a directory
    /// or prefix (recursively, sorted), or the files of a directory whose
    /// name matches a glob (`*`, `?`) in the last component. Names starting
    /// with `.` or `_` (in-progress parts, `_SUCCESS` markers) are skipped
    /// when listing.
    pub async fn files(&self) -> Result<Vec<String>, ConnectorError> {
        let path = self.path.as_str();
        let (dir, last) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        if last.contains(['*', '?', '[']) {
            let re = glob_regex(last)?;
            let mut out = Vec::new();
            for e in self.list(dir, false).await? {
                let name = e.rsplit('/').next().unwrap_or(&e);
                if re.is_match(name) {
                    out.push(e);
                }
            }
            out.sort();
            return Ok(self.inside(out));
        }
        if !last.is_empty() {
            match self.op.stat(path).await {
                Ok(m) if m.mode().is_file() => {
                    self.check_inside(path)?;
                    return Ok(vec![path.to_string()]);
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound && self.scheme == Scheme::S3 => {}
                Err(e) => return Err(storage_error(&self.display, e)),
            }
        }
        if self.scheme == Scheme::Http {
            return Err(ConnectorError::config(
                "path",
                format!(
                    "`{}`: over http(s) only single files can be read (no listing)",
                    self.display
                ),
            ));
        }
        let dir = if path.is_empty() || path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        let mut out = self.list(&dir, true).await?;
        out.sort();
        Ok(self.inside(out))
    }

    /// The files of `listed` that stay inside a confined location (the
    /// others are left out with a warning: a symlink leaving the source).
    fn inside(&self, listed: Vec<String>) -> Vec<String> {
        if self.confine.is_none() {
            return listed;
        }
        listed
            .into_iter()
            .filter(|p| match self.check_inside(p) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("left out of the listing: {e}");
                    false
                }
            })
            .collect()
    }

    /// Files (not directories) under `dir`, skipping hidden and `_` names.
    pub async fn list(&self, dir: &str, recursive: bool) -> Result<Vec<String>, ConnectorError> {
        if self.scheme == Scheme::Fs {
            let dir = dir.to_string();
            return tokio::task::spawn_blocking(move || list_local(&dir, recursive))
                .await
                .map_err(|e| ConnectorError::Storage {
                    what: "listing".into(),
                    message: e.to_string(),
                })?
                .map_err(|e| ConnectorError::Storage {
                    what: self.display.clone(),
                    message: e.to_string(),
                });
        }
        let entries = match self.op.list_with(dir).recursive(recursive).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(storage_error(&self.display, e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| !e.path().ends_with('/') && e.metadata().mode().is_file())
            .filter(|e| listed_name(e.path()))
            .map(|e| e.path().trim_start_matches('/').to_string())
            .collect())
    }
}

/// Not a hidden or `_` name (in-progress parts, `_SUCCESS` markers).
fn listed_name(path: &str) -> bool {
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    !name.starts_with('.') && !name.starts_with('_')
}

/// Files under the local directory `/dir` (`dir` as an fs-operator path).
/// Done here rather than through opendal: a symlinked directory is not
/// descended into (no loops, no leaving the tree by a link), and a
/// symlinked file is listed as what it points to, for the confinement
/// check to judge.
fn list_local(dir: &str, recursive: bool) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = vec![std::path::PathBuf::from(format!(
        "/{}",
        dir.trim_start_matches('/')
    ))];
    while let Some(d) = pending.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let name = path.to_string_lossy().trim_start_matches('/').to_string();
            if !listed_name(&name) {
                continue;
            }
            let own = entry.file_type()?;
            if own.is_dir() {
                if recursive {
                    pending.push(path);
                }
            } else if own.is_file() || (own.is_symlink() && path.is_file()) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// `*` and `?` (and `[...]` classes) of one path component, as an anchored regex.
fn glob_regex(glob: &str) -> Result<regex::Regex, ConnectorError> {
    let mut re = String::from("^");
    let mut in_class = false;
    for c in glob.chars() {
        match c {
            '*' if !in_class => re.push_str("[^/]*"),
            '?' if !in_class => re.push_str("[^/]"),
            '[' if !in_class => {
                in_class = true;
                re.push('[');
            }
            ']' if in_class => {
                in_class = false;
                re.push(']');
            }
            '!' if in_class && re.ends_with('[') => re.push('^'),
            c if in_class => {
                if c == '\\' {
                    re.push('\\');
                }
                re.push(c)
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re)
        .map_err(|e| ConnectorError::config("path", format!("bad glob `{glob}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let r = glob_regex("*.log").unwrap();
        assert!(r.is_match("a.log") && !r.is_match("a.log.gz") && !r.is_match("a.txt"));
        let r = glob_regex("part-?[0-9].csv").unwrap();
        assert!(r.is_match("part-01.csv") && !r.is_match("part-0x.csv"));
    }

    #[test]
    fn urls() {
        let l = Location::open("s3://b/p/x.csv", &StorageOptions::default()).unwrap();
        assert_eq!((l.scheme, l.path.as_str()), (Scheme::S3, "p/x.csv"));
        let l = Location::open("file:///tmp/a/", &StorageOptions::default()).unwrap();
        assert_eq!((l.scheme, l.path.as_str()), (Scheme::Fs, "tmp/a/"));
        let l =
            Location::open("http://127.0.0.1:8080/d/x.csv", &StorageOptions::default()).unwrap();
        assert_eq!((l.scheme, l.path.as_str()), (Scheme::Http, "d/x.csv"));
        assert!(Location::open("ftp://x/y", &StorageOptions::default()).is_err());
    }
}
