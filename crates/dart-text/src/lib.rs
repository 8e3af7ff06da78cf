//! Text for dart-rl: what lies between the engine's token ids and an agent's
//! text. `tokenizer` loads and runs a Hugging Face `tokenizer.json` with the
//! `tokenizers` crate (the library behind transformers' fast tokenizers);
//! `tags` resolves the agent format's tags (`<search>`, ...) to token ids from
//! the tokenizer itself; `chat` renders `tokenizer_config.json`'s chat
//! template with a real Jinja engine (minijinja); `train` trains a new
//! byte-level BPE tokenizer. Errors are `TextError` values with a stable
//! `DART_*` code, as in dart-core.
pub mod chat;
pub mod error;
pub mod tags;
pub mod tokenizer;
pub mod train;

pub use chat::ChatTemplate;
pub use error::{Result, TextError};
pub use tags::{resolve_tags, ResolvedTag, AGENT_TAGS};
pub use tokenizer::{AddedTokenInfo, Encoded, TextTokenizer};
pub use train::{train_byte_level_bpe, TrainOptions};

/// Token ids as a binding receives them (JS Int32Array): refused when one is
/// negative, naming `name` and the position.
pub fn token_ids(name: &str, ids: &[i32]) -> Result<Vec<u32>> {
    match ids.iter().position(|&i| i < 0) {
        Some(p) => Err(TextError::InvalidArgument(format!("{name}[{p}] = {} is negative; token ids are >= 0", ids[p]))),
        None => Ok(ids.iter().map(|&i| i as u32).collect()),
    }
}

/// JSON text a binding receives (messages, tools, template variables).
pub fn parse_json(name: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| TextError::InvalidArgument(format!("{name} is not valid JSON: {e}")))
}
