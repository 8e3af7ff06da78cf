//! A Hugging Face tokenizer (`tokenizer.json`) run by the `tokenizers` crate:
//! every model the crate supports (byte-level BPE, WordPiece, WordLevel,
//! Unigram), with its normalizer, pre-tokenizer, post-processor, decoder and
//! added/special tokens, exactly as transformers' fast tokenizers run it.
use crate::error::{Result, TextError};
use std::path::Path;
use tokenizers::{AddedToken, EncodeInput, Tokenizer};

/// One encoded text: token ids and, per token, the (start, end) character
/// offsets (Unicode scalar values) into the text, as Python's `tokenizers`
/// reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

/// An added token of the vocabulary (`added_tokens` of tokenizer.json).
#[derive(Debug, Clone, PartialEq)]
pub struct AddedTokenInfo {
    pub id: u32,
    pub content: String,
    pub special: bool,
}

#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> TextError {
    TextError::Tokenizer(format!("{what}: {e}"))
}

impl TextTokenizer {
    pub fn new(inner: Tokenizer) -> Self {
        TextTokenizer { inner }
    }

    /// Loads a `tokenizer.json` (a file, or a model folder holding one).
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        let json = std::fs::read_to_string(&file).map_err(|e| TextError::Io(format!("{}: {e}", file.display())))?;
        Self::from_json(&json).map_err(|e| match e {
            TextError::Tokenizer(m) => TextError::Tokenizer(format!("{}: {m}", file.display())),
            other => other,
        })
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let inner: Tokenizer = json.parse().map_err(|e| tok_err("not a valid tokenizer.json", e))?;
        Ok(TextTokenizer { inner })
    }

    pub fn to_json(&self, pretty: bool) -> Result<String> {
        self.inner.to_string(pretty).map_err(|e| tok_err("serialising", e))
    }

    /// Writes `tokenizer.json` (pretty, as transformers saves it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json(true)?;
        std::fs::write(path, json).map_err(|e| TextError::Io(format!("{}: {e}", path.display())))
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes one text; `add_special_tokens` applies the post-processor
    /// (BOS/EOS, templates) as `encode(..., add_special_tokens=True)` does.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoded> {
        let e = self.inner.encode_char_offsets(text, add_special_tokens).map_err(|e| tok_err("encode", e))?;
        Ok(Encoded { ids: e.get_ids().to_vec(), offsets: e.get_offsets().to_vec() })
    }

    /// Encodes many texts (in parallel on the crate's thread pool).
    pub fn encode_batch(&self, texts: &[String], add_special_tokens: bool) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = texts.iter().map(|t| t.as_str().into()).collect();
        let out = self.inner.encode_batch_char_offsets(inputs, add_special_tokens).map_err(|e| tok_err("encode", e))?;
        Ok(out.into_iter().map(|e| Encoded { ids: e.get_ids().to_vec(), offsets: e.get_offsets().to_vec() }).collect())
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let n = self.vocab_size(true) as u32;
        match ids.iter().position(|&i| i >= n) {
            Some(p) => Err(TextError::InvalidArgument(format!("token id {} at index {p} is outside the vocabulary (0..{n})", ids[p]))),
            None => Ok(()),
        }
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.check_ids(ids)?;
        self.inner.decode(ids, skip_special_tokens).map_err(|e| tok_err("decode", e))
    }

    pub fn decode_batch(&self, ids: &[Vec<u32>], skip_special_tokens: bool) -> Result<Vec<String>> {
        for s in ids {
            self.check_ids(s)?;
        }
        let refs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
        self.inner.decode_batch(&refs, skip_special_tokens).map_err(|e| tok_err("decode", e))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The vocabulary size, with or without the added tokens.
    pub fn vocab_size(&self, with_added_tokens: bool) -> usize {
        self.inner.get_vocab_size(with_added_tokens)
    }

    /// The added tokens (special or not), by id.
    pub fn added_tokens(&self) -> Vec<AddedTokenInfo> {
        let mut v: Vec<AddedTokenInfo> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| AddedTokenInfo { id, content: t.content, special: t.special })
            .collect();
        v.sort_by_key(|t| t.id);
        v
    }

    /// Adds tokens matched as a whole before the model runs (as
    /// `tokenizer.add_tokens` / `add_special_tokens` do); returns how many
    /// were new. New ids extend the vocabulary: a model must have rows for them.
    pub fn add_tokens(&mut self, tokens: &[String], special: bool) -> Result<usize> {
        if let Some(t) = tokens.iter().find(|t| t.is_empty()) {
            return Err(TextError::InvalidArgument(format!("cannot add an empty token ({t:?})")));
        }
        let added: Vec<AddedToken> = tokens.iter().map(|t| AddedToken::from(t.clone(), special).normalized(false)).collect();
        let n = if special { self.inner.add_special_tokens(added) } else { self.inner.add_tokens(added) };
        n.map_err(|e| tok_err("add tokens", e))
    }
}
