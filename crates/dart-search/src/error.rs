//! Errors as values with a stable code (docs/search.md), as in dart-core.
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum SearchError {
    /// A file or folder cannot be read or written.
    #[error("i/o error: {0}")]
    Io(String),
    /// A corpus line that is not a passage (file, line and field named).
    #[error("corpus: {0}")]
    Corpus(String),
    /// A folder that is not a dart-rl index, or a damaged/truncated one.
    #[error("index: {0}")]
    Index(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl SearchError {
    pub fn code(&self) -> &'static str {
        match self {
            SearchError::Io(_) => "DART_IO",
            SearchError::Corpus(_) => "DART_CORPUS",
            SearchError::Index(_) => "DART_INDEX",
            SearchError::InvalidArgument(_) => "DART_INVALID_ARGUMENT",
        }
    }
}

pub type Result<T> = std::result::Result<T, SearchError>;
