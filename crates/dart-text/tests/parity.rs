//! Parity with Python `tokenizers` + transformers on the committed fixture
//! (tests/fixtures/tokenizer, made by scripts/make_tokenizer_fixture.py):
//! every encoding, offset and decoding, the batch encode, every chat
//! rendering, and the agent tags resolved from the vocabulary.
use dart_text::{resolve_tags, train_byte_level_bpe, ChatTemplate, TextTokenizer, TrainOptions, AGENT_TAGS};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer").join(name)
}
fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}
fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}
fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(&fixture("tokenizer.json")).unwrap()
}

#[test]
fn encodings_offsets_and_decodings_equal_python_tokenizers() {
    let tok = tokenizer();
    let fx = load("encodings.json");
    assert_eq!(tok.vocab_size(true), fx["vocab_size"].as_u64().unwrap() as usize);
    let entries = fx["entries"].as_array().unwrap();
    assert!(entries.len() >= 300, "{} strings", entries.len());
    for e in entries {
        let text = e["text"].as_str().unwrap();
        let what = format!("entry {} {text:?}", e["id"]);
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(enc.ids, u32s(&e["ids"]), "{what}: ids");
        let offsets: Vec<(usize, usize)> = e["offsets"].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize)).collect();
        assert_eq!(enc.offsets, offsets, "{what}: offsets");
        let tokens: Vec<String> = enc.ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
        let want_tokens: Vec<String> = e["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
        assert_eq!(tokens, want_tokens, "{what}: tokens");
        assert_eq!(tok.encode(text, true).unwrap().ids, u32s(&e["ids_with_special"]), "{what}: ids with special tokens");
        assert_eq!(tok.decode(&enc.ids, false).unwrap(), e["decoded"].as_str().unwrap(), "{what}: decode");
        assert_eq!(tok.decode(&enc.ids, true).unwrap(), e["decoded_skip"].as_str().unwrap(), "{what}: decode skipping special tokens");
    }
    println!("{} strings: ids, offsets, tokens and decodings equal Python tokenizers", entries.len());
}

#[test]
fn batch_encode_and_decode_equal_python() {
    let tok = tokenizer();
    let b = &load("encodings.json")["batch"];
    let texts: Vec<String> = b["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let got = tok.encode_batch(&texts, false).unwrap();
    let want: Vec<Vec<u32>> = b["ids"].as_array().unwrap().iter().map(u32s).collect();
    assert_eq!(got.iter().map(|e| e.ids.clone()).collect::<Vec<_>>(), want);
    let with_special: Vec<Vec<u32>> = b["ids_with_special"].as_array().unwrap().iter().map(u32s).collect();
    assert_eq!(tok.encode_batch(&texts, true).unwrap().iter().map(|e| e.ids.clone()).collect::<Vec<_>>(), with_special);
    let decoded = tok.decode_batch(&want, false).unwrap();
    for (d, w) in decoded.iter().zip(&want) {
        assert_eq!(d, &tok.decode(w, false).unwrap());
    }
    println!("batch of {} texts equals single encodes and Python's encode_batch", texts.len());
}

#[test]
fn chat_template_renderings_equal_transformers() {
    let tok = tokenizer();
    let chat = ChatTemplate::from_tokenizer_config(&fixture("tokenizer_config.json")).unwrap();
    let fx = load("chat.json");
    let convs = fx["conversations"].as_array().unwrap();
    assert!(convs.len() >= 6);
    for c in convs {
        let name = c["name"].as_str().unwrap();
        let tools = if c["tools"].is_null() { None } else { Some(&c["tools"]) };
        let got = chat.render(&c["messages"], tools, c["add_generation_prompt"].as_bool().unwrap(), None).unwrap();
        assert_eq!(got, c["rendered"].as_str().unwrap(), "conversation {name}");
        assert_eq!(tok.encode(&got, false).unwrap().ids, u32s(&c["ids"]), "conversation {name}: ids");
    }
    println!("{} conversations render and tokenize as transformers' apply_chat_template", convs.len());
}

#[test]
fn agent_tags_resolve_from_the_vocabulary() {
    let tok = tokenizer();
    let added = &load("encodings.json")["added_tokens"];
    let tags = resolve_tags(&tok, &AGENT_TAGS).unwrap();
    for t in &tags {
        assert_eq!(t.ids, vec![added[&t.tag].as_u64().unwrap() as u32], "{}", t.tag);
    }
    // A tag the vocabulary splits, glued to text, is refused with the context.
    let e = resolve_tags(&tok, &["<tool>"]).unwrap_err();
    assert_eq!(e.code(), "DART_TAG");
    assert!(e.to_string().contains("\"<tool>\"") && e.to_string().contains("context"), "{e}");
    println!("{} tags resolved: {:?}", tags.len(), tags.iter().map(|t| (&t.tag, &t.ids)).collect::<Vec<_>>());
}

#[test]
fn bad_files_give_clear_errors() {
    let e = TextTokenizer::from_file(&fixture("missing.json")).err().unwrap();
    assert_eq!(e.code(), "DART_IO");
    assert!(e.to_string().contains("missing.json"), "{e}");
    let e = TextTokenizer::from_file(&fixture("chat.json")).err().unwrap();
    assert_eq!(e.code(), "DART_TOKENIZER");
    assert!(e.to_string().contains("chat.json") && e.to_string().contains("not a valid tokenizer.json"), "{e}");
    let tok = tokenizer();
    let e = tok.decode(&[1, 99999], false).unwrap_err();
    assert!(e.to_string().contains("99999") && e.to_string().contains("index 1"), "{e}");
}

/// Training: a tokenizer trained on the fixture's texts keeps every tag and
/// special token whole, decodes every encoding back to (NFC) text, and is
/// the same when trained twice.
#[test]
fn trained_tokenizer_round_trips_and_is_deterministic() {
    let fx = load("encodings.json");
    let texts: Vec<String> = fx["entries"].as_array().unwrap().iter().map(|e| e["text"].as_str().unwrap().to_string()).collect();
    let opts = TrainOptions { vocab_size: 600, ..Default::default() };
    let a = train_byte_level_bpe(texts.iter(), &opts).unwrap();
    let b = train_byte_level_bpe(texts.iter(), &opts).unwrap();
    assert_eq!(a.to_json(false).unwrap(), b.to_json(false).unwrap(), "training is deterministic");
    assert!(a.vocab_size(true) <= 600, "vocab {}", a.vocab_size(true));
    let tags = resolve_tags(&a, &AGENT_TAGS).unwrap();
    assert!(tags.iter().all(|t| t.ids.len() == 1));
    for s in &opts.special_tokens {
        assert_eq!(a.encode(s, false).unwrap().ids.len(), 1, "{s}");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let alphabet: Vec<char> = "abc XYZ 0123 .,!?\n\t é ü 中文 😀 <search> </answer>".chars().collect();
    let cases = 300;
    for _ in 0..cases {
        let n = rng.random_range(0..40);
        let s: String = (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
        let ids = a.encode(&s, false).unwrap().ids;
        assert_eq!(a.decode(&ids, false).unwrap(), s, "round trip of {s:?}");
    }
    println!("trained vocab {} tokens; {cases} random strings round-trip", a.vocab_size(true));
    let e = train_byte_level_bpe(texts.iter(), &TrainOptions { vocab_size: 100, ..Default::default() }).err().unwrap();
    assert!(e.to_string().contains("vocab_size 100"), "{e}");
}
