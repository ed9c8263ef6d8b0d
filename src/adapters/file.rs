//! The `file` adapter: change files dropped into a directory for batch
//! systems, as NDJSON or CSV.
//!
//! A reader never sees a partial file. Each file is written under a hidden
//! temporary name (`.<random>.tmp`, in the same directory), fsynced, then given its
//! final name with a hard link (which, unlike a rename, never replaces a
//! file that already has the name), the temporary name removed and the
//! directory fsynced. Readers pick up files matching the naming pattern and
//! ignore names that start with a dot.
//!
//! ```text
//! op ─▶ line ─▶ [batch: up to N lines or T ms] ─▶ .x.tmp ─fsync─▶ link name ─▶ fsync dir ─▶ Ok
//! ```
//!
//! An operation is reported successful only once its line is durably in a
//! named file: the engine records success right after the call returns. By
//! default every operation gets its own file; with `batch_max_lines` the
//! operations that arrive within `batch_max_wait_ms` share one.
//!
//! Every line carries an `operation_id` derived from the operation (app,
//! identity, account revision, op, content), as the webhook's event id: a
//! retry after a crash writes the same id again, so consumers de-duplicate.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{Adapter, AdapterError, Applied, ErrorKind, OpContext};
use crate::config::{AppSettings, FileAdapterSettings, FileFormat};
use crate::domain::Kind;
use crate::format::csv_field;

const DEFAULT_PATTERN: &str = "changes-{timestamp}-{seq}.{ext}";
const FIXED_CSV_COLUMNS: [&str; 7] = [
    "operation_id",
    "timestamp",
    "op",
    "type",
    "app",
    "id",
    "revision",
];

/// Writes named files into the directory.
struct Writer {
    dir: PathBuf,
    format: FileFormat,
    pattern: String,
    app: String,
    csv_columns: Vec<String>,
    seq: AtomicU64,
}

/// A change waiting for its batch to be written.
struct Pending {
    line: String,
    done: oneshot::Sender<Result<(), AdapterError>>,
}

/// A directory of change files.
pub struct FileAdapter {
    writer: Arc<Writer>,
    max_lines: usize,
    max_wait: Duration,
    /// The batching task's queue, started on first use when batching.
    queue: OnceLock<mpsc::UnboundedSender<Pending>>,
}

/// Checks a file name pattern: placeholders known, no path separators, and
/// something that makes every name distinct.
pub fn check_pattern(pattern: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !pattern.contains('/') && !pattern.contains('\\') && !pattern.contains(".."),
        "file_name {pattern:?} must be a plain file name"
    );
    anyhow::ensure!(
        !pattern.starts_with('.'),
        "file_name {pattern:?} must not start with a dot (those are the temporary files)"
    );
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| anyhow::anyhow!("file_name {pattern:?}: unclosed {{"))?;
        let name = &rest[open + 1..open + close];
        anyhow::ensure!(
            matches!(name, "app" | "timestamp" | "seq" | "uuid" | "ext"),
            "file_name {pattern:?}: unknown placeholder {{{name}}} (app, timestamp, seq, uuid, ext)"
        );
        rest = &rest[open + close + 1..];
    }
    anyhow::ensure!(
        ["{timestamp}", "{seq}", "{uuid}"]
            .iter()
            .any(|p| pattern.contains(p)),
        "file_name {pattern:?} needs {{timestamp}}, {{seq}} or {{uuid}} so names differ"
    );
    Ok(())
}

fn io_error(what: &str, e: &std::io::Error) -> AdapterError {
    use std::io::ErrorKind as K;
    let kind = match e.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem => ErrorKind::Unauthorized,
        K::InvalidInput | K::InvalidFilename => ErrorKind::Rejected,
        // Disk full, I/O errors, a share not mounted: the same write may
        // work later.
        _ => ErrorKind::Transient,
    };
    AdapterError {
        kind,
        status: None,
        message: format!("file: {what}: {e}"),
    }
}

fn csv_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl Writer {
    fn ext(&self) -> &'static str {
        match self.format {
            FileFormat::Ndjson => "ndjson",
            FileFormat::Csv => "csv",
        }
    }

    fn name(&self) -> String {
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ").to_string();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.pattern
            .replace("{app}", &self.app)
            .replace("{timestamp}", &now)
            .replace("{seq}", &format!("{seq:06}"))
            .replace("{uuid}", &uuid::Uuid::new_v4().simple().to_string())
            .replace("{ext}", self.ext())
    }

    fn header(&self) -> Option<String> {
        (self.format == FileFormat::Csv).then(|| {
            let mut cols: Vec<String> = FIXED_CSV_COLUMNS.iter().map(|c| c.to_string()).collect();
            if self.csv_columns.is_empty() {
                cols.push("account".into());
            } else {
                cols.extend(self.csv_columns.iter().map(|c| csv_field(c)));
            }
            cols.join(",")
        })
    }

    /// One change as a line (without its line end).
    fn line(&self, record: &Value) -> String {
        match self.format {
            FileFormat::Ndjson => record.to_string(),
            FileFormat::Csv => {
                let mut fields: Vec<String> = FIXED_CSV_COLUMNS
                    .iter()
                    .map(|c| csv_field(&csv_value(record.get(*c))))
                    .collect();
                let account = record.get("account").unwrap_or(&Value::Null);
                if self.csv_columns.is_empty() {
                    fields.push(csv_field(&account.to_string()));
                } else {
                    fields.extend(
                        self.csv_columns
                            .iter()
                            .map(|p| csv_field(&csv_value(super::paths::value_at(account, p)))),
                    );
                }
                fields.join(",")
            }
        }
    }

    /// Writes the lines as one new file; returns only once the file is
    /// durably in the directory under its final name.
    fn write(&self, lines: &[String]) -> Result<PathBuf, AdapterError> {
        let eol = match self.format {
            FileFormat::Ndjson => "\n",
            FileFormat::Csv => "\r\n",
        };
        let mut body = String::new();
        for l in self.header().iter().chain(lines) {
            body.push_str(l);
            body.push_str(eol);
        }
        let tmp = self
            .dir
            .join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_error("creating a temporary file", &e))?;
        let written = f
            .write_all(body.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("writing a temporary file", &e));
        drop(f);
        let named = written.and_then(|()| self.publish(&tmp));
        let _ = std::fs::remove_file(&tmp);
        let path = named?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("syncing the directory", &e))?;
        Ok(path)
    }

    /// Gives the complete temporary file a final name that no other file has.
    fn publish(&self, tmp: &Path) -> Result<PathBuf, AdapterError> {
        for _ in 0..100 {
            let path = self.dir.join(self.name());
            match std::fs::hard_link(tmp, &path) {
                Ok(()) => return Ok(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                // A file system without hard links: rename, after checking
                // the name is free (the pattern makes a clash unlikely).
                Err(_) if !path.exists() => {
                    return std::fs::rename(tmp, &path)
                        .map(|()| path)
                        .map_err(|e| io_error("naming the file", &e));
                }
                Err(e) => return Err(io_error("naming the file", &e)),
            }
        }
        Err(AdapterError::transient(
            "file: no free file name after 100 tries",
        ))
    }
}

fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "user",
        Kind::Group => "group",
    }
}

fn is_active(v: &Value) -> bool {
    v.get("active").and_then(Value::as_bool).unwrap_or(true)
}

/// The operation id: the same for a retry of the same operation.
pub fn operation_id(ctx: &OpContext, op: &str, account: &Value) -> String {
    let mut h = Sha256::new();
    for part in [
        ctx.app.as_str(),
        ctx.identity.as_str(),
        &ctx.revision.to_string(),
        op,
        &account.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("op_{}", &hex::encode(h.finalize())[..32])
}

impl FileAdapter {
    /// Checks the settings and creates the directory; removes temporary
    /// files that a crash left behind more than an hour ago.
    pub fn new(app: &AppSettings, s: &FileAdapterSettings) -> anyhow::Result<Self> {
        let pattern = s
            .file_name
            .clone()
            .unwrap_or_else(|| DEFAULT_PATTERN.to_string());
        check_pattern(&pattern)?;
        anyhow::ensure!(
            s.format == FileFormat::Csv || s.csv_columns.is_empty(),
            "app {}: csv_columns needs format = \"csv\"",
            app.name
        );
        std::fs::create_dir_all(&s.directory)
            .map_err(|e| anyhow::anyhow!("file directory {}: {e}", s.directory.display()))?;
        if let Ok(entries) = std::fs::read_dir(&s.directory) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(3600));
                if name.starts_with('.') && name.ends_with(".tmp") && stale {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Self {
            writer: Arc::new(Writer {
                dir: s.directory.clone(),
                format: s.format,
                pattern,
                app: app.name.clone(),
                csv_columns: s.csv_columns.clone(),
                seq: AtomicU64::new(0),
            }),
            max_lines: s.batch_max_lines.unwrap_or(1).max(1),
            max_wait: Duration::from_millis(s.batch_max_wait_ms.unwrap_or(200)),
            queue: OnceLock::new(),
        })
    }

    async fn emit(
        &self,
        ctx: &OpContext,
        op: &str,
        account: &Value,
    ) -> Result<Applied, AdapterError> {
        let record = json!({
            "operation_id": operation_id(ctx, op, account),
            "timestamp": crate::format::now(),
            "op": op,
            "type": noun(ctx.kind),
            "app": ctx.app,
            "id": ctx.identity,
            "revision": ctx.revision,
            "account": account,
        });
        let line = self.writer.line(&record);
        if self.max_lines == 1 {
            let w = self.writer.clone();
            tokio::task::spawn_blocking(move || w.write(&[line]))
                .await
                .map_err(|e| AdapterError::transient(format!("file task failed: {e}")))??;
        } else {
            let (done, wait) = oneshot::channel();
            self.queue()
                .send(Pending { line, done })
                .map_err(|_| AdapterError::transient("file: the batch writer stopped"))?;
            wait.await
                .map_err(|_| AdapterError::transient("file: the batch writer stopped"))??;
        }
        Ok(Applied {
            remote_id: Some(ctx.identity.clone()),
            adopted: false,
            status: None,
        })
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Pending> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batch_loop(
                self.writer.clone(),
                rx,
                self.max_lines,
                self.max_wait,
            ));
            tx
        })
    }
}

/// Gathers changes into files of up to `max_lines`, waiting at most
/// `max_wait` after the first; answers each change once its file is named.
async fn batch_loop(
    w: Arc<Writer>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    max_lines: usize,
    max_wait: Duration,
) {
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut batch = vec![first];
        while batch.len() < max_lines {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                _ => break,
            }
        }
        let lines: Vec<String> = batch.iter().map(|p| p.line.clone()).collect();
        let w2 = w.clone();
        let result = tokio::task::spawn_blocking(move || w2.write(&lines).map(|_| ()))
            .await
            .unwrap_or_else(|e| Err(AdapterError::transient(format!("file task failed: {e}"))));
        for p in batch {
            let _ = p.done.send(result.clone());
        }
    }
}

#[async_trait::async_trait]
impl Adapter for FileAdapter {
    async fn create(&self, ctx: &OpContext, account: &Value) -> Result<Applied, AdapterError> {
        self.emit(ctx, "create", account).await
    }

    async fn locate(
        &self,
        ctx: &OpContext,
        _account: &Value,
    ) -> Result<Option<String>, AdapterError> {
        // Consumers of the files cannot be asked; lines name the gateway id.
        Ok(Some(ctx.identity.clone()))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        _remote_id: &str,
        before: &Value,
        after: &Value,
    ) -> Result<Applied, AdapterError> {
        let op = match (is_active(before), is_active(after)) {
            (true, false) => "disable",
            (false, true) => "enable",
            _ => "update",
        };
        let mut applied = self.emit(ctx, op, after).await?;
        applied.remote_id = None;
        Ok(applied)
    }

    async fn delete(
        &self,
        ctx: &OpContext,
        _remote_id: &str,
        last: &Value,
    ) -> Result<Applied, AdapterError> {
        let mut applied = self.emit(ctx, "delete", last).await?;
        applied.remote_id = None;
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern(DEFAULT_PATTERN).is_ok());
        assert!(check_pattern("{app}-{uuid}.csv").is_ok());
        assert!(check_pattern("changes.ndjson").is_err(), "no distinct part");
        assert!(check_pattern("../x-{seq}").is_err());
        assert!(check_pattern("a/{seq}").is_err());
        assert!(check_pattern(".hidden-{seq}").is_err());
        assert!(check_pattern("{nope}-{seq}").is_err());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn a_retry_has_the_same_operation_id() {
        let ctx = OpContext {
            app: "hr".into(),
            identity: "u1".into(),
            kind: Kind::User,
            in_doubt: false,
            revision: 2,
        };
        let a = json!({"userName": "ada"});
        assert_eq!(
            operation_id(&ctx, "update", &a),
            operation_id(&ctx, "update", &a)
        );
        assert_ne!(
            operation_id(&ctx, "update", &a),
            operation_id(&ctx, "disable", &a)
        );
    }
}
