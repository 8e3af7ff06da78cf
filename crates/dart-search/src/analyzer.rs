//! The English analysis of passages and queries, close to Lucene's
//! EnglishAnalyzer that pyserini indexes with: words (letters and digits),
//! possessive 's dropped, lower case, Lucene's English stop words, English
//! stemming. Built from tantivy's token filters.
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, TokenStream};

/// The name the analyzer is registered under in an index's tokenizers.
pub const ANALYZER: &str = "dart_en";

/// Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (what pyserini removes).
pub const LUCENE_ENGLISH_STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such",
    "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
];

pub fn english() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        // SimpleTokenizer splits "Paris's" into "paris", "s": the lone "s"
        // is what Lucene's possessive filter removes.
        .filter(StopWordFilter::remove(LUCENE_ENGLISH_STOP_WORDS.iter().map(|s| s.to_string()).chain(["s".to_string()])))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The analysed terms of a text (a query), in order, repeats kept.
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}
