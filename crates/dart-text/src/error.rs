//! Errors as values, each with a stable code the napi edge exposes as
//! `error.code` (docs/text.md).
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum TextError {
    /// A file cannot be read or written.
    #[error("i/o error: {0}")]
    Io(String),
    /// A tokenizer.json that does not parse, or an encode/decode failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A chat template that does not parse or fails to render.
    #[error("chat template: {0}")]
    Template(String),
    /// A tag that does not tokenize to the same ids in every context.
    #[error("unstable tag: {0}")]
    UnstableTag(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl TextError {
    pub fn code(&self) -> &'static str {
        match self {
            TextError::Io(_) => "DART_IO",
            TextError::Tokenizer(_) => "DART_TOKENIZER",
            TextError::Template(_) => "DART_TEMPLATE",
            TextError::UnstableTag(_) => "DART_TAG",
            TextError::InvalidArgument(_) => "DART_INVALID_ARGUMENT",
        }
    }
}

pub type Result<T> = std::result::Result<T, TextError>;
