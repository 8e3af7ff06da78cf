//! The `Tokenizer` and `ChatTemplate` classes (dart-text): Hugging Face
//! tokenizers, the agent tags resolved from the vocabulary, chat templates,
//! tokenizer training. Token ids are Int32Array, as the engine takes them.
use crate::errors::{sync_with as sync, Code};
use dart_text::{ChatTemplate, Encoded, TextError, TextTokenizer, TrainOptions};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::path::PathBuf;

#[napi(object, js_name = "Encoding")]
pub struct JsEncoding {
    pub ids: Int32Array,
    /// [start0, end0, start1, end1, ...]: each token's character offsets
    /// (Unicode code points, as Python's tokenizers reports them).
    pub offsets: Int32Array,
}

#[napi(object, js_name = "AddedToken")]
pub struct JsAddedToken {
    pub id: u32,
    pub content: String,
    pub special: bool,
}

#[napi(object, js_name = "ResolvedTag")]
pub struct JsResolvedTag {
    pub tag: String,
    pub ids: Int32Array,
}

#[napi(object, js_name = "TrainTokenizerOptions")]
pub struct JsTrainOptions {
    /// Target vocabulary size, special and added tokens included (default 4096).
    pub vocab_size: Option<u32>,
    /// Pairs seen fewer times are not merged (default 2).
    pub min_frequency: Option<u32>,
    /// Special tokens (default <|endoftext|>, <|im_start|>, <|im_end|>).
    pub special_tokens: Option<Vec<String>>,
    /// Whole but not special tokens (default: the eight agent tags).
    pub added_tokens: Option<Vec<String>>,
}

fn encoding(e: Encoded) -> JsEncoding {
    let offsets: Vec<i32> = e.offsets.iter().flat_map(|&(s, t)| [s as i32, t as i32]).collect();
    JsEncoding { ids: Int32Array::new(e.ids.iter().map(|&i| i as i32).collect()), offsets: Int32Array::new(offsets) }
}

/// A Hugging Face tokenizer (tokenizer.json), run by the `tokenizers` crate.
#[napi(js_name = "Tokenizer")]
pub struct JsTokenizer {
    inner: TextTokenizer,
}

#[napi]
impl JsTokenizer {
    /// Loads tokenizer.json (a file, or a model folder holding one).
    #[napi(factory)]
    pub fn from_file(path: String) -> Result<JsTokenizer, Code> {
        sync(|| Ok::<_, TextError>(JsTokenizer { inner: TextTokenizer::from_file(&PathBuf::from(&path))? }))
    }

    /// Parses the text of a tokenizer.json.
    #[napi(factory)]
    pub fn from_json(json: String) -> Result<JsTokenizer, Code> {
        sync(|| Ok::<_, TextError>(JsTokenizer { inner: TextTokenizer::from_json(&json)? }))
    }

    /// Trains a byte-level BPE tokenizer (Qwen2 layout) on `texts`.
    #[napi(factory)]
    pub fn train(texts: Vec<String>, opts: Option<JsTrainOptions>) -> Result<JsTokenizer, Code> {
        sync(|| {
            let mut o = TrainOptions::default();
            if let Some(j) = opts {
                if let Some(v) = j.vocab_size {
                    o.vocab_size = v as usize;
                }
                if let Some(v) = j.min_frequency {
                    o.min_frequency = v as u64;
                }
                if let Some(v) = j.special_tokens {
                    o.special_tokens = v;
                }
                if let Some(v) = j.added_tokens {
                    o.added_tokens = v;
                }
            }
            Ok::<_, TextError>(JsTokenizer { inner: dart_text::train_byte_level_bpe(texts.iter(), &o)? })
        })
    }

    /// The tokenizer.json text.
    #[napi]
    pub fn to_json(&self, pretty: Option<bool>) -> Result<String, Code> {
        sync(|| self.inner.to_json(pretty.unwrap_or(false)))
    }

    /// Writes tokenizer.json.
    #[napi]
    pub fn save(&self, path: String) -> Result<(), Code> {
        sync(|| self.inner.save(&PathBuf::from(&path)))
    }

    #[napi]
    pub fn encode(&self, text: String, add_special_tokens: Option<bool>) -> Result<JsEncoding, Code> {
        sync(|| Ok::<_, TextError>(encoding(self.inner.encode(&text, add_special_tokens.unwrap_or(false))?)))
    }

    /// Encodes many texts at once (in parallel).
    #[napi]
    pub fn encode_batch(&self, texts: Vec<String>, add_special_tokens: Option<bool>) -> Result<Vec<JsEncoding>, Code> {
        sync(|| Ok::<_, TextError>(self.inner.encode_batch(&texts, add_special_tokens.unwrap_or(false))?.into_iter().map(encoding).collect()))
    }

    #[napi]
    pub fn decode(&self, ids: Int32Array, skip_special_tokens: Option<bool>) -> Result<String, Code> {
        sync(|| self.inner.decode(&dart_text::token_ids("ids", &ids)?, skip_special_tokens.unwrap_or(false)))
    }

    #[napi]
    pub fn decode_batch(&self, ids: Vec<Int32Array>, skip_special_tokens: Option<bool>) -> Result<Vec<String>, Code> {
        sync(|| {
            let all = ids.iter().enumerate().map(|(i, s)| dart_text::token_ids(&format!("ids[{i}]"), s)).collect::<std::result::Result<Vec<_>, _>>()?;
            self.inner.decode_batch(&all, skip_special_tokens.unwrap_or(false))
        })
    }

    /// The id of a token string (a vocabulary entry or an added token), or null.
    #[napi]
    pub fn token_to_id(&self, token: String) -> Option<u32> {
        self.inner.token_to_id(&token)
    }

    #[napi]
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The vocabulary size (with the added tokens unless `withAddedTokens` is false).
    #[napi]
    pub fn vocab_size(&self, with_added_tokens: Option<bool>) -> u32 {
        self.inner.vocab_size(with_added_tokens.unwrap_or(true)) as u32
    }

    #[napi]
    pub fn added_tokens(&self) -> Vec<JsAddedToken> {
        self.inner.added_tokens().into_iter().map(|t| JsAddedToken { id: t.id, content: t.content, special: t.special }).collect()
    }

    /// Adds tokens kept whole (new ids extend the vocabulary); returns how many were new.
    #[napi]
    pub fn add_tokens(&mut self, tokens: Vec<String>, special: Option<bool>) -> Result<u32, Code> {
        sync(|| Ok::<_, TextError>(self.inner.add_tokens(&tokens, special.unwrap_or(false))? as u32))
    }

    /// Each tag's token ids, from this vocabulary (default: the eight agent
    /// tags); DART_TAG when a tag does not tokenize the same in every context.
    #[napi]
    pub fn resolve_tags(&self, tags: Option<Vec<String>>) -> Result<Vec<JsResolvedTag>, Code> {
        sync(|| {
            let tags: Vec<String> = tags.unwrap_or_else(|| dart_text::AGENT_TAGS.iter().map(|s| s.to_string()).collect());
            let refs: Vec<&str> = tags.iter().map(|s| s.as_str()).collect();
            let out = dart_text::resolve_tags(&self.inner, &refs)?;
            Ok::<_, TextError>(out.into_iter().map(|t| JsResolvedTag { tag: t.tag, ids: Int32Array::new(t.ids.iter().map(|&i| i as i32).collect()) }).collect())
        })
    }
}

/// A chat template (tokenizer_config.json's chat_template) rendered with minijinja.
#[napi(js_name = "ChatTemplate")]
pub struct JsChatTemplate {
    inner: ChatTemplate,
}

#[napi]
impl JsChatTemplate {
    /// Reads tokenizer_config.json (a file, or a model folder holding one).
    #[napi(factory)]
    pub fn from_tokenizer_config(path: String) -> Result<JsChatTemplate, Code> {
        sync(|| Ok::<_, TextError>(JsChatTemplate { inner: ChatTemplate::from_tokenizer_config(&PathBuf::from(&path))? }))
    }

    /// A template from its source; `specialTokensJson` is an object such as
    /// {"bos_token": "<s>", "eos_token": "</s>"}.
    #[napi(factory)]
    pub fn from_source(source: String, special_tokens_json: Option<String>) -> Result<JsChatTemplate, Code> {
        sync(|| {
            let tokens = match special_tokens_json {
                None => serde_json::Map::new(),
                Some(t) => match dart_text::parse_json("specialTokensJson", &t)? {
                    serde_json::Value::Object(o) => o,
                    other => return Err(TextError::InvalidArgument(format!("specialTokensJson must be an object, got {other}"))),
                },
            };
            Ok(JsChatTemplate { inner: ChatTemplate::new(&source, tokens)? })
        })
    }

    /// Renders messages (JSON text of a list of {role, content, ...}) as
    /// apply_chat_template(..., tokenize=False) does. `toolsJson` and
    /// `extraJson` (more template variables) are JSON text too.
    #[napi]
    pub fn render(&self, messages_json: String, add_generation_prompt: bool, tools_json: Option<String>, extra_json: Option<String>) -> Result<String, Code> {
        sync(|| {
            let messages = dart_text::parse_json("messagesJson", &messages_json)?;
            let tools = tools_json.map(|t| dart_text::parse_json("toolsJson", &t)).transpose()?;
            let extra = extra_json.map(|t| dart_text::parse_json("extraJson", &t)).transpose()?;
            self.inner.render(&messages, tools.as_ref(), add_generation_prompt, extra.as_ref())
        })
    }
}
