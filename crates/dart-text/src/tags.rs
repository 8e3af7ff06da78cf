//! The agent format's tags resolved to token ids from the tokenizer itself,
//! so the generator's role rules (which tokens open and close a tool call)
//! come from the model's own vocabulary, never from hand-written ids.
//!
//! A tag is usable only if it is *stable*: in every context below it encodes
//! to the same ids as alone, and no token crosses its boundaries (a token
//! spanning the tag's first character and the text before it, as byte-level
//! BPE does with a leading space, hides the tag from a token-level matcher).
use crate::error::{Result, TextError};
use crate::tokenizer::TextTokenizer;

/// The tags of the Search-R1 agent format.
pub const AGENT_TAGS: [&str; 8] = ["<think>", "</think>", "<search>", "</search>", "<information>", "</information>", "<answer>", "</answer>"];

/// The contexts a tag is checked in (`{}` = the tag): alone, glued to words,
/// after and before spaces and newlines, twice in a row.
pub const TAG_CONTEXTS: [&str; 9] = ["{}", "word{}", "{}word", "a{}b", " {}", "{} ", "\n{}\n", "x. {}y", "{}{}"];

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTag {
    pub tag: String,
    pub ids: Vec<u32>,
}

/// Resolves each tag to its token ids, or fails naming the first tag and
/// context where it does not tokenize stably (and how it tokenized there).
pub fn resolve_tags(tok: &TextTokenizer, tags: &[&str]) -> Result<Vec<ResolvedTag>> {
    tags.iter().map(|tag| resolve_tag(tok, tag)).collect()
}

fn resolve_tag(tok: &TextTokenizer, tag: &str) -> Result<ResolvedTag> {
    if tag.is_empty() {
        return Err(TextError::InvalidArgument("a tag must not be empty".into()));
    }
    let alone = tok.encode(tag, false)?.ids;
    if alone.is_empty() {
        return Err(TextError::UnstableTag(format!("{tag:?} encodes to no tokens")));
    }
    let tag_chars = tag.chars().count();
    for ctx in TAG_CONTEXTS {
        let text = ctx.replace("{}", tag);
        let enc = tok.encode(&text, false)?;
        // Character positions of each occurrence of the tag in `text`.
        let starts: Vec<usize> = text.match_indices(tag).map(|(b, _)| text[..b].chars().count()).collect();
        for start in starts {
            let end = start + tag_chars;
            let inside: Vec<usize> = (0..enc.ids.len()).filter(|&i| enc.offsets[i].0 >= start && enc.offsets[i].1 <= end && enc.offsets[i].1 > enc.offsets[i].0).collect();
            let crossing = enc.offsets.iter().any(|&(s, e)| (s < start && e > start) || (s < end && e > end));
            let ids: Vec<u32> = inside.iter().map(|&i| enc.ids[i]).collect();
            let contiguous = inside.windows(2).all(|w| w[1] == w[0] + 1);
            if crossing || !contiguous || ids != alone {
                let shown: Vec<String> = enc.ids.iter().map(|&i| tok.id_to_token(i).unwrap_or_else(|| format!("#{i}"))).collect();
                return Err(TextError::UnstableTag(format!(
                    "{tag:?} encodes alone to {alone:?} but in the context {text:?} to tokens {shown:?} (ids {:?}); \
                     a tag must be the same token sequence wherever it appears: add it to the tokenizer as an added \
                     token (tokenizer.add_tokens), or use a tokenizer whose vocabulary keeps it whole",
                    enc.ids
                )));
            }
        }
    }
    Ok(ResolvedTag { tag: tag.to_string(), ids: alone })
}
