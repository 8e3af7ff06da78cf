//! Errors as values. Each variant maps to one stable code that the napi edge
//! exposes as `error.code` (see docs/engine-api.md).
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum DartError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("missing tensor: {0}")]
    MissingTensor(String),
    #[error("unknown slot: {0}")]
    UnknownSlot(String),
    #[error("non-finite value: {0}")]
    NonFinite(String),
    #[error("i/o error: {0}")]
    Io(String),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("invalid state: {0}")]
    State(String),
}

impl DartError {
    pub fn code(&self) -> &'static str {
        match self {
            DartError::InvalidArgument(_) => "DART_INVALID_ARGUMENT",
            DartError::Shape(_) => "DART_SHAPE",
            DartError::MissingTensor(_) => "DART_MISSING_TENSOR",
            DartError::UnknownSlot(_) => "DART_UNKNOWN_SLOT",
            DartError::NonFinite(_) => "DART_NON_FINITE",
            DartError::Io(_) => "DART_IO",
            DartError::Config(_) => "DART_CONFIG",
            DartError::State(_) => "DART_STATE",
        }
    }

    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        DartError::Io(format!("{}: {e}", path.display()))
    }
}

pub type Result<T> = std::result::Result<T, DartError>;
