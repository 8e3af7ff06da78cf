//! The Search-R1 corpus layout, streamed: one JSON object per line with an
//! `id` (string or integer) and `contents` = `"Title"\ntext` (the title on
//! the first line, in double quotes), in a `.jsonl` file or a gzipped
//! `.jsonl.gz`. Read line by line: memory does not grow with the corpus.
use crate::error::{Result, SearchError};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// A passage of the corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub id: String,
    pub title: String,
    pub text: String,
}

/// Splits Search-R1's `contents` into title and text: a first line in
/// double quotes is the title (quotes removed); otherwise there is none.
pub fn split_contents(contents: &str) -> (String, String) {
    let (first, rest) = contents.split_once('\n').unwrap_or((contents, ""));
    if first.len() >= 2 && first.starts_with('"') && first.ends_with('"') {
        (first[1..first.len() - 1].to_string(), rest.to_string())
    } else {
        (String::new(), contents.to_string())
    }
}

/// Counts the bytes read from the file (compressed bytes for .gz), for the
/// progress bar's ETA.
struct Counted<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A streaming reader of a corpus file.
pub struct CorpusReader {
    lines: Box<dyn BufRead + Send>,
    file: String,
    line: usize,
    buf: String,
    /// Bytes of the file read so far, and the file's size.
    pub bytes_read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub bytes_total: u64,
}

impl CorpusReader {
    pub fn open(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let gz = name.ends_with(".gz");
        let base = name.strip_suffix(".gz").unwrap_or(&name);
        if !(base.ends_with(".jsonl") || base.ends_with(".json") || base.ends_with(".ndjson")) {
            return Err(SearchError::InvalidArgument(format!(
                "{file}: a corpus is a .jsonl file (or .jsonl.gz) with one {{\"id\", \"contents\"}} object per line"
            )));
        }
        let f = File::open(path).map_err(|e| SearchError::Io(format!("{file}: {e}")))?;
        let bytes_total = f.metadata().map(|m| m.len()).unwrap_or(0);
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Counted { inner: f, read: read.clone() };
        let lines: Box<dyn BufRead + Send> = if gz {
            Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, counted))))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, counted))
        };
        Ok(CorpusReader { lines, file, line: 0, buf: String::new(), bytes_read: read, bytes_total })
    }

    fn bad(&self, what: String) -> SearchError {
        SearchError::Corpus(format!("{} line {}: {what}", self.file, self.line))
    }

    /// The next passage, None at the end; blank lines are skipped.
    pub fn next_passage(&mut self) -> Result<Option<Passage>> {
        loop {
            self.buf.clear();
            let n = self.lines.read_line(&mut self.buf).map_err(|e| SearchError::Io(format!("{} after line {}: {e}", self.file, self.line)))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let text = self.buf.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| self.bad(format!("not valid JSON ({e})")))?;
            let obj = v.as_object().ok_or_else(|| self.bad("expected a JSON object {\"id\", \"contents\"}".into()))?;
            let id = match obj.get("id") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(other) => return Err(self.bad(format!("field \"id\" must be a string or an integer, got {other}"))),
                None => return Err(self.bad("field \"id\" is missing".into())),
            };
            let contents = match obj.get("contents") {
                Some(serde_json::Value::String(s)) => s,
                Some(other) => return Err(self.bad(format!("field \"contents\" must be a string, got {}", short(other)))),
                None => return Err(self.bad("field \"contents\" is missing".into())),
            };
            let (title, text) = split_contents(contents);
            return Ok(Some(Passage { id, title, text }));
        }
    }

    pub fn line(&self) -> usize {
        self.line
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 60 { format!("{}...", &s[..s.char_indices().nth(57).map(|c| c.0).unwrap_or(s.len())]) } else { s }
}
