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
