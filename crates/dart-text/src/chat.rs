//! Chat templates: `tokenizer_config.json`'s `chat_template` rendered with
//! minijinja, a real Jinja engine, set up the way transformers'
//! `apply_chat_template` sets up Jinja2 (trim_blocks, lstrip_blocks, loop
//! controls, `raise_exception`, a `tojson` that is Python's `json.dumps`
//! with `ensure_ascii=False`), with Python's string and dict methods from
//! minijinja-contrib's pycompat.
//!
//! Why in Rust and not @huggingface/jinja in TypeScript: the tokenizer is
//! here, so a conversation is rendered and encoded in one call; the WASM
//! build of the engine gets the same renderer; and minijinja's pycompat
//! covers the Python methods real templates call.
use crate::error::{Result, TextError};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde_json::Value as Json;
use std::path::Path;

/// A compiled chat template and the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// bos_token, eos_token, pad_token, unk_token (when the config has them).
    tokens: serde_json::Map<String, Json>,
}

const NAME: &str = "chat_template";

fn template_err(e: Error) -> TextError {
    // minijinja's alternate form adds the template line the error is on.
    let mut msg = format!("{e:#}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    TextError::Template(msg)
}

/// A token in tokenizer_config.json: a string, or an AddedToken object.
fn token_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

impl ChatTemplate {
    /// Compiles `source` (a Jinja template); `tokens` are the special
    /// tokens (bos_token, ...) made available to it.
    pub fn new(source: &str, tokens: serde_json::Map<String, Json>) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(template_err)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, source.to_string()).map_err(template_err)?;
        Ok(ChatTemplate { env, tokens })
    }

    /// Reads the template and special tokens of a `tokenizer_config.json`
    /// (a file, or a model folder holding one). A named template set (a
    /// list of {name, template}) is refused unless it holds "default".
    pub fn from_tokenizer_config(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("tokenizer_config.json") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|e| TextError::Io(format!("{}: {e}", file.display())))?;
        let cfg: Json = serde_json::from_str(&text).map_err(|e| TextError::Template(format!("{}: not valid JSON: {e}", file.display())))?;
        Self::from_config_json(&cfg).map_err(|e| match e {
            TextError::Template(m) => TextError::Template(format!("{}: {m}", file.display())),
            other => other,
        })
    }

    pub fn from_config_json(cfg: &Json) -> Result<Self> {
        let source = match cfg.get("chat_template") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")).and_then(|t| t.as_str())
                .map(String::from)
                .ok_or_else(|| TextError::Template("chat_template is a list of named templates without one named \"default\"".into()))?,
            Some(other) => return Err(TextError::Template(format!("chat_template must be a string, got {other}"))),
            None => return Err(TextError::Template("the config has no chat_template (a base model's tokenizer has none: give a template)".into())),
        };
        let mut tokens = serde_json::Map::new();
        for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
            if let Some(t) = cfg.get(key).and_then(token_text) {
                tokens.insert(key.to_string(), Json::String(t));
            }
        }
        Self::new(&source, tokens)
    }

    /// Renders a conversation as `apply_chat_template(messages, tools=tools,
    /// add_generation_prompt=..., tokenize=False, **extra)` does. `messages`
    /// must be a list of objects with a string `role`; `extra` (an object)
    /// adds variables such as `enable_thinking`.
    pub fn render(&self, messages: &Json, tools: Option<&Json>, add_generation_prompt: bool, extra: Option<&Json>) -> Result<String> {
        let list = messages.as_array().ok_or_else(|| TextError::InvalidArgument(format!("messages must be a list, got {}", kind(messages))))?;
        for (i, m) in list.iter().enumerate() {
            match m.get("role") {
                Some(Json::String(_)) => {}
                _ => return Err(TextError::InvalidArgument(format!("messages[{i}] needs a string \"role\" (got {m})"))),
            }
        }
        let mut ctx = self.tokens.clone();
        if let Some(extra) = extra {
            let o = extra.as_object().ok_or_else(|| TextError::InvalidArgument(format!("extra template variables must be an object, got {}", kind(extra))))?;
            for (k, v) in o {
                ctx.insert(k.clone(), v.clone());
            }
        }
        ctx.insert("messages".into(), messages.clone());
        ctx.insert("tools".into(), tools.cloned().unwrap_or(Json::Null));
        ctx.insert("documents".into(), Json::Null);
        ctx.insert("add_generation_prompt".into(), Json::Bool(add_generation_prompt));
        let tmpl = self.env.get_template(NAME).map_err(template_err)?;
        tmpl.render(Value::from(minijinja::value::Serde(&ctx))).map_err(template_err)
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn raise_exception(msg: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`. Hand-written because
/// minijinja's own `tojson` HTML-escapes and serde_json cannot produce
/// Python's default separators (", " and ": ") or float spelling.
fn tojson(value: Value, kwargs: minijinja::value::Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => Some(v.as_str().map(String::from).ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "tojson: indent must be an integer or a string"))?),
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let a: Vec<Value> = v.try_iter()?.collect();
            match (a.first().and_then(|x| x.as_str()), a.get(1).and_then(|x| x.as_str()), a.len()) {
                (Some(i), Some(k), 2) => (i.to_string(), k.to_string()),
                _ => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair of strings")),
            }
        }
        _ => (if indent.is_some() { "," } else { ", " }.to_string(), ": ".to_string()),
    };
    let json: Json = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let opts = PyJson { indent, item_sep, key_sep, sort_keys: sort_keys.unwrap_or(false), ensure_ascii: ensure_ascii.unwrap_or(false) };
    let mut out = String::new();
    opts.write(&mut out, &json, 0);
    Ok(Value::from(out))
}

struct PyJson {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl PyJson {
    fn newline(&self, out: &mut String, level: usize) {
        if let Some(ind) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    fn write(&self, out: &mut String, v: &Json, level: usize) {
        match v {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&py_number(n)),
            Json::String(s) => self.string(out, s),
            Json::Array(a) if a.is_empty() => out.push_str("[]"),
            Json::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(out, level + 1);
                    self.write(out, x, level + 1);
                }
                self.newline(out, level);
                out.push(']');
            }
            Json::Object(o) if o.is_empty() => out.push_str("{}"),
            Json::Object(o) => {
                let mut entries: Vec<(&String, &Json)> = o.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(out, level + 1);
                    self.string(out, k);
                    out.push_str(&self.key_sep);
                    self.write(out, x, level + 1);
                }
                self.newline(out, level);
                out.push('}');
            }
        }
    }

    fn string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.ensure_ascii && (c as u32) > 0x7e => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{:04x}", unit));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A number as Python's json.dumps writes it (`repr` of int and float).
fn py_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if !f.is_finite() {
        return if f.is_nan() { "NaN".into() } else if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Python's repr: the shortest round-trip digits, positional when the
    // exponent is in [-4, 16), else d.ddde+XX.
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new("{{ x | tojson }}|{{ x | tojson(indent=2) }}", Default::default()).unwrap();
        let x: Json = serde_json::from_str(r#"{"b": [1, 2.5, 1e-7, 1e20, true, null], "a": "é<&'\"\n"}"#).unwrap();
        let out = t.render(&serde_json::json!([]), None, false, Some(&serde_json::json!({ "x": x }))).unwrap();
        // python3 -c 'import json; x={"b":[1,2.5,1e-7,1e20,True,None],"a":"é<&\x27\"\n"}; print(json.dumps(x, ensure_ascii=False)+"|"+json.dumps(x, ensure_ascii=False, indent=2))'
        let want = "{\"b\": [1, 2.5, 1e-07, 1e+20, true, null], \"a\": \"é<&'\\\"\\n\"}|{\n  \"b\": [\n    1,\n    2.5,\n    1e-07,\n    1e+20,\n    true,\n    null\n  ],\n  \"a\": \"é<&'\\\"\\n\"\n}";
        assert_eq!(out, want);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let e = ChatTemplate::new("{% if %}", Default::default()).err().unwrap();
        assert_eq!(e.code(), "DART_TEMPLATE");
        let t = ChatTemplate::new("{{ raise_exception('only user and assistant roles') }}", Default::default()).unwrap();
        let e = t.render(&serde_json::json!([{"role": "user", "content": "hi"}]), None, false, None).unwrap_err();
        assert!(e.to_string().contains("only user and assistant roles"), "{e}");
        let e = t.render(&serde_json::json!([{"content": "hi"}]), None, false, None).unwrap_err();
        assert!(e.to_string().contains("messages[0] needs a string \"role\""), "{e}");
        let e = ChatTemplate::from_config_json(&serde_json::json!({"eos_token": "</s>"})).err().unwrap();
        assert!(e.to_string().contains("no chat_template"), "{e}");
    }
}
