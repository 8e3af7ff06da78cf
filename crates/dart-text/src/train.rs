//! Training a new byte-level BPE tokenizer with the `tokenizers` crate's
//! trainer, laid out as Qwen2's (NFC, Qwen2's split regex, byte-level
//! pre-tokenizer/decoder): the built-in world trains its tokenizer this way.
use crate::error::{Result, TextError};
use crate::tokenizer::TextTokenizer;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Qwen2's pre-tokenization regex (as in its tokenizer.json).
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Target vocabulary size, special and added tokens included (the
    /// trainer stops earlier when the text has no more pairs to merge).
    pub vocab_size: usize,
    /// Pairs seen fewer times are not merged.
    pub min_frequency: u64,
    /// Special tokens (skipped by decode(skip_special_tokens)), ids 0.. first.
    pub special_tokens: Vec<String>,
    /// Tokens kept whole but not special (e.g. the agent tags), added last.
    pub added_tokens: Vec<String>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            vocab_size: 4096,
            min_frequency: 2,
            special_tokens: vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()],
            added_tokens: crate::tags::AGENT_TAGS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

fn err(e: impl std::fmt::Display) -> TextError {
    TextError::Tokenizer(format!("training: {e}"))
}

/// Trains on `texts` (deterministic for the same texts and options).
pub fn train_byte_level_bpe<S: AsRef<str> + Send>(texts: impl Iterator<Item = S> + Send, opts: &TrainOptions) -> Result<TextTokenizer> {
    let reserved = opts.special_tokens.len() + opts.added_tokens.len() + ByteLevel::alphabet().len();
    if opts.vocab_size < reserved {
        return Err(TextError::InvalidArgument(format!(
            "vocab_size {} is below the {reserved} tokens it must hold (256 bytes + {} special + {} added)",
            opts.vocab_size,
            opts.special_tokens.len(),
            opts.added_tokens.len()
        )));
    }
    let special: Vec<AddedToken> = opts.special_tokens.iter().map(|t| AddedToken::from(t.clone(), true).normalized(false)).collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(opts.vocab_size - opts.added_tokens.len())
        .min_frequency(opts.min_frequency)
        .special_tokens(special)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build()
        .into();
    let split = Split::new(SplitPattern::Regex(QWEN2_SPLIT.into()), SplitDelimiterBehavior::Isolated, false).map_err(err)?;
    let pre = Sequence::new(vec![PreTokenizerWrapper::Split(split), PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false))]);
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_normalizer(Some(NFC)).map_err(err)?;
    tok.with_pre_tokenizer(Some(pre));
    tok.with_post_processor(Some(ByteLevel::new(false, false, false)));
    tok.with_decoder(Some(ByteLevel::new(false, false, false)));
    tok.train(&mut trainer, texts).map_err(err)?;
    let mut tok = TextTokenizer::new(tok);
    tok.add_tokens(&opts.added_tokens, false)?;
    Ok(tok)
}
