//! dart-rl's engine as WebAssembly, through wasm-bindgen: the classes
//! `Engine` and `Session` and the function `assignRoles`, with the napi
//! addon's method names and argument shapes, and the text side a page needs
//! (`Tokenizer`, `ChatTemplate`: dart-text, from file contents). Every argument is checked by
//! `dart_core::api`, the code the addon uses, so both builds accept and
//! refuse the same inputs. Errors are JS `Error`s whose `code` is the same
//! DART_* string the addon gives.
//!
//! Why wasm-bindgen and not napi-rs's wasm32-wasi target: that target needs
//! the wasi-threads toolchain and emnapi, and runs only where a napi shim
//! exists; wasm-bindgen's output loads in any browser and in Node from plain
//! ES modules, which is what this build is for.
//!
//! What differs from the addon, on purpose:
//! - everything runs on the calling thread (no threads in plain WASM), so
//!   the methods that return a Promise in the addon return their value here;
//!   the TypeScript adapter (ts/src/engine/wasm.ts) wraps them in Promises;
//! - there is no file system: a model comes in as bytes (`fromBytes`) and the
//!   checkpoint methods (save/load of adapters, models, optimizer state) are
//!   not here; the adapter refuses them with DART_IO;
//! - a Rust panic aborts the WASM call (WASM has no unwinding): the hook
//!   below keeps its message, which the adapter reports as DART_PANIC, and an
//!   engine left mid-call refuses further calls with DART_STATE.
use dart_core::api::{self, non_negative_int};
use dart_core::checkpoint;
use dart_core::generate::{Generated, Session};
use dart_core::{DartError, ModelConfig, SlotReport};
use dart_text::{ChatTemplate, TextError, TextTokenizer};
use js_sys::{Array, Float32Array, Int32Array, Object, Reflect, Uint8Array};
use serde::de::DeserializeOwned;
use std::cell::{RefCell, RefMut, Ref};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

type CoreEngine = dart_core::Engine<f32>;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the panic hook (wasm-bindgen runs this when the module starts).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
    }));
}

/// The message of the panic that aborted the last call, if one did (taken:
/// a second call returns undefined).
#[wasm_bindgen(js_name = takePanic)]
pub fn take_panic() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow_mut().take())
}

/// The error a JS caller gets: `new Error(message)` with `code` = DART_*.
fn js_error(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

fn err(e: DartError) -> JsValue {
    js_error(e.code(), &e.to_string())
}

fn text_err(e: TextError) -> JsValue {
    js_error(e.code(), &e.to_string())
}

fn text<T>(r: dart_text::Result<T>) -> JsResult<T> {
    r.map_err(text_err)
}

type JsResult<T> = Result<T, JsValue>;

fn core<T>(r: dart_core::Result<T>) -> JsResult<T> {
    r.map_err(err)
}

/// A JS options object decoded into an `api` input; a missing or wrongly
/// typed field is DART_INVALID_ARGUMENT naming `what`.
fn decode<T: DeserializeOwned>(what: &str, v: JsValue) -> JsResult<T> {
    serde_wasm_bindgen::from_value(v).map_err(|e| err(DartError::InvalidArgument(format!("{what}: {e}"))))
}

fn set(o: &Object, key: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(o, &key.into(), &v.into());
}

fn named(tensors: Vec<(String, Vec<f32>)>) -> Object {
    let o = Object::new();
    for (n, v) in tensors {
        set(&o, &n, Float32Array::from(&v[..]));
    }
    o
}

fn report(r: SlotReport) -> Object {
    let o = Object::new();
    set(&o, "slot", r.slot);
    set(&o, "tokens", r.tokens as f64);
    set(&o, "gradNorm", r.grad_norm);
    set(&o, "clipped", r.clipped);
    set(&o, "updated", r.updated);
    o
}

fn generated(g: Generated) -> Object {
    let o = Object::new();
    set(&o, "seq", g.seq as f64);
    set(&o, "tokens", Int32Array::from(&g.tokens[..]));
    let roles: Vec<u8> = g.roles.into_iter().map(|r| r as u8).collect();
    set(&o, "roles", Uint8Array::from(&roles[..]));
    set(&o, "routes", Int32Array::from(&g.routes[..]));
    set(&o, "logprobs", Float32Array::from(&g.logprobs[..]));
    set(&o, "stop", g.stop.name());
    o
}

fn options(opts: JsValue) -> JsResult<dart_core::EngineOptions> {
    let input: Option<api::EngineOptionsInput> = decode("options", opts)?;
    // One thread: plain WASM has no others (api refuses threads > 1).
    core(input.unwrap_or_default().check(1))
}

/// The dart-rl engine: a frozen base model with K routed LoRA slots.
#[wasm_bindgen(js_name = Engine)]
pub struct WasmEngine {
    inner: Rc<RefCell<CoreEngine>>,
}

/// A panic leaves its RefCell borrowed (no unwinding in WASM): the next call
/// is told why instead of panicking again.
fn left_by_panic() -> JsValue {
    err(DartError::State("this engine was left mid-call by an earlier DART_PANIC; create a new engine".into()))
}

fn borrow(e: &RefCell<CoreEngine>) -> JsResult<Ref<'_, CoreEngine>> {
    e.try_borrow().map_err(|_| left_by_panic())
}

fn borrow_mut(e: &RefCell<CoreEngine>) -> JsResult<RefMut<'_, CoreEngine>> {
    e.try_borrow_mut().map_err(|_| left_by_panic())
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    fn wrap(e: CoreEngine) -> WasmEngine {
        WasmEngine { inner: Rc::new(RefCell::new(e)) }
    }

    /// A seeded random model from the text of a config.json.
    pub fn random(config_json: &str, seed: f64, opts: JsValue) -> JsResult<WasmEngine> {
        let cfg = core(ModelConfig::from_json(config_json))?;
        let seed = core(non_negative_int("seed", seed))?;
        Ok(Self::wrap(core(CoreEngine::random(cfg, seed, &options(opts)?))?))
    }

    /// A Hugging Face model from config.json's text and the bytes of its
    /// single model.safetensors file.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(config_json: &str, safetensors: Vec<u8>, opts: JsValue) -> JsResult<WasmEngine> {
        Ok(Self::wrap(core(checkpoint::model_from_bytes::<f32>(config_json, safetensors, &options(opts)?))?))
    }

    /// { backend: "cpu", adapter, deviceType }.
    #[wasm_bindgen(js_name = backendInfo)]
    pub fn backend_info(&self) -> JsResult<Object> {
        let i = borrow(&self.inner)?.backend_info();
        let o = Object::new();
        set(&o, "backend", i.backend);
        set(&o, "adapter", i.adapter);
        set(&o, "deviceType", i.device_type);
        Ok(o)
    }

    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> JsResult<String> {
        Ok(borrow(&self.inner)?.config().to_json())
    }

    /// Adds a LoRA slot; returns its index.
    #[wasm_bindgen(js_name = addAdapter)]
    pub fn add_adapter(&self, spec: JsValue) -> JsResult<u32> {
        let spec = core(decode::<api::AdapterSpecInput>("spec", spec)?.check())?;
        Ok(core(borrow_mut(&self.inner)?.add_adapter(spec))? as u32)
    }

    #[wasm_bindgen(js_name = numAdapters)]
    pub fn num_adapters(&self) -> JsResult<u32> {
        Ok(borrow(&self.inner)?.num_adapters() as u32)
    }

    #[wasm_bindgen(js_name = setTrainBase)]
    pub fn set_train_base(&self, on: bool) -> JsResult<()> {
        borrow_mut(&self.inner)?.set_train_base(on);
        Ok(())
    }

    /// Log-probabilities of each next token (see the addon's `forward`).
    pub fn forward(&self, tokens: &[i32], seq_lens: &[i32], routes: &[i32], logprob_mask: Option<Vec<u8>>) -> JsResult<Float32Array> {
        let v = core(borrow_mut(&self.inner)?.forward_wanted(tokens, seq_lens, routes, logprob_mask.as_deref()))?;
        Ok(Float32Array::from(&v[..]))
    }

    pub fn backward(&self, dl_dlogp: &[f32]) -> JsResult<()> {
        core(borrow_mut(&self.inner)?.backward(dl_dlogp))
    }

    #[wasm_bindgen(js_name = zeroGrad)]
    pub fn zero_grad(&self) -> JsResult<()> {
        borrow_mut(&self.inner)?.zero_grad();
        Ok(())
    }

    /// AdamW on the slots with gradients; { slots: SlotReport[], base? }.
    pub fn step(&self, options: JsValue) -> JsResult<Object> {
        let options = decode::<api::StepOptionsInput>("options", options)?.check();
        let (slots, base) = core(borrow_mut(&self.inner)?.step(&options))?;
        let o = Object::new();
        set(&o, "slots", slots.into_iter().map(report).collect::<Array>());
        if let Some(b) = base {
            set(&o, "base", report(b));
        }
        Ok(o)
    }

    #[wasm_bindgen(js_name = adapterTensors)]
    pub fn adapter_tensors(&self, slot: i32) -> JsResult<Object> {
        Ok(named(core(api::adapter_tensors(&*borrow(&self.inner)?, slot))?))
    }

    #[wasm_bindgen(js_name = adapterGrads)]
    pub fn adapter_grads(&self, slot: i32) -> JsResult<Object> {
        Ok(named(core(api::adapter_grads(&*borrow(&self.inner)?, slot))?))
    }

    #[wasm_bindgen(js_name = optimizerState)]
    pub fn optimizer_state(&self, slot: i32) -> JsResult<Object> {
        Ok(named(core(api::optimizer_state(&*borrow(&self.inner)?, slot))?))
    }

    #[wasm_bindgen(js_name = setAdapterTensor)]
    pub fn set_adapter_tensor(&self, slot: i32, name: &str, data: &[f32]) -> JsResult<()> {
        core(api::set_adapter_tensor(&mut *borrow_mut(&self.inner)?, slot, name, data))
    }

    #[wasm_bindgen(js_name = baseTensor)]
    pub fn base_tensor(&self, name: &str) -> JsResult<Float32Array> {
        Ok(Float32Array::from(&core(api::base_tensor(&*borrow(&self.inner)?, name))?[..]))
    }

    /// A generation session: { plan, rules, seed? }.
    pub fn session(&self, options: JsValue) -> JsResult<WasmSession> {
        let input = decode::<api::SessionOptionsInput>("options", options)?;
        let session = core(input.open(&*borrow(&self.inner)?))?;
        Ok(WasmSession { engine: self.inner.clone(), inner: RefCell::new(session) })
    }

    /// Panics on purpose (the test of the DART_PANIC path).
    #[wasm_bindgen(js_name = debugPanic)]
    pub fn debug_panic(&self) -> JsResult<()> {
        let _held = borrow_mut(&self.inner)?;
        panic!("debug_panic was called")
    }
}

/// Batched generation over one engine, with routing by role while decoding.
#[wasm_bindgen(js_name = Session)]
pub struct WasmSession {
    engine: Rc<RefCell<CoreEngine>>,
    inner: RefCell<Session<f32>>,
}

impl WasmSession {
    fn session(&self) -> JsResult<RefMut<'_, Session<f32>>> {
        self.inner.try_borrow_mut().map_err(|_| left_by_panic())
    }
}

#[wasm_bindgen(js_class = Session)]
impl WasmSession {
    /// Adds a sequence with its prompt tokens (role P); returns its index.
    #[wasm_bindgen(js_name = addSequence)]
    pub fn add_sequence(&self, prompt: &[i32]) -> JsResult<u32> {
        Ok(core(self.session()?.add_sequence(&*borrow(&self.engine)?, prompt))? as u32)
    }

    /// Appends prompt or tool-output tokens and resumes the sequence.
    pub fn extend(&self, seq: u32, tokens: &[i32], role: &str) -> JsResult<()> {
        let role = core(api::input_role(role))?;
        core(self.session()?.extend(&*borrow(&self.engine)?, seq as usize, tokens, role))
    }

    pub fn finish(&self, seq: u32) -> JsResult<()> {
        self.session()?.finish(seq as usize);
        Ok(())
    }

    /// Decodes every active sequence until each stops; what each one gained.
    pub fn generate(&self, options: JsValue) -> JsResult<Array> {
        let o = decode::<api::GenerateOptionsInput>("options", options)?.check();
        let out = core(self.session()?.generate(&*borrow(&self.engine)?, &o))?;
        Ok(out.into_iter().map(generated).collect())
    }

    /// The whole history of a sequence.
    pub fn sequence(&self, seq: u32) -> JsResult<Object> {
        Ok(generated(core(api::sequence(&*self.session()?, seq))?))
    }

    #[wasm_bindgen(js_name = numSequences)]
    pub fn num_sequences(&self) -> JsResult<u32> {
        Ok(self.session()?.seqs.len() as u32)
    }
}

/// Roles of a trajectory from who wrote each token (0 prompt, 1 model,
/// 2 tool), by the rule generation uses.
#[wasm_bindgen(js_name = assignRoles)]
pub fn assign_roles(tokens: &[i32], sources: &[u8], rules: JsValue) -> JsResult<Uint8Array> {
    let rules = decode::<api::RoleRulesInput>("rules", rules)?;
    Ok(Uint8Array::from(&core(api::trajectory_roles(tokens, sources, rules))?[..]))
}

/// A Hugging Face tokenizer from the text of its tokenizer.json (dart-text,
/// the `tokenizers` crate; the addon's `Tokenizer` reads it from a file).
#[wasm_bindgen(js_name = Tokenizer)]
pub struct WasmTokenizer {
    inner: TextTokenizer,
}

#[wasm_bindgen(js_class = Tokenizer)]
impl WasmTokenizer {
    #[wasm_bindgen(js_name = fromJson)]
    pub fn from_json(json: &str) -> JsResult<WasmTokenizer> {
        Ok(WasmTokenizer { inner: text(TextTokenizer::from_json(json))? })
    }

    /// { ids: Int32Array, offsets: Int32Array [start0, end0, ...] }.
    pub fn encode(&self, text_in: &str, add_special_tokens: Option<bool>) -> JsResult<Object> {
        let e = text(self.inner.encode(text_in, add_special_tokens.unwrap_or(false)))?;
        let ids: Vec<i32> = e.ids.iter().map(|&i| i as i32).collect();
        let offsets: Vec<i32> = e.offsets.iter().flat_map(|&(a, b)| [a as i32, b as i32]).collect();
        let o = Object::new();
        set(&o, "ids", Int32Array::from(&ids[..]));
        set(&o, "offsets", Int32Array::from(&offsets[..]));
        Ok(o)
    }

    pub fn decode(&self, ids: &[i32], skip_special_tokens: Option<bool>) -> JsResult<String> {
        text(self.inner.decode(&text(dart_text::token_ids("ids", ids))?, skip_special_tokens.unwrap_or(false)))
    }

    #[wasm_bindgen(js_name = tokenToId)]
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    #[wasm_bindgen(js_name = idToToken)]
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    #[wasm_bindgen(js_name = vocabSize)]
    pub fn vocab_size(&self, with_added_tokens: Option<bool>) -> u32 {
        self.inner.vocab_size(with_added_tokens.unwrap_or(true)) as u32
    }

    /// Each tag's token ids (default: the eight agent tags): [{ tag, ids }].
    #[wasm_bindgen(js_name = resolveTags)]
    pub fn resolve_tags(&self, tags: Option<Vec<String>>) -> JsResult<Array> {
        let tags: Vec<String> = tags.unwrap_or_else(|| dart_text::AGENT_TAGS.iter().map(|s| s.to_string()).collect());
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let out = text(dart_text::resolve_tags(&self.inner, &refs))?;
        Ok(out
            .into_iter()
            .map(|t| {
                let o = Object::new();
                let ids: Vec<i32> = t.ids.iter().map(|&i| i as i32).collect();
                set(&o, "tag", t.tag);
                set(&o, "ids", Int32Array::from(&ids[..]));
                o
            })
            .collect())
    }
}

/// A chat template rendered with minijinja (dart-text).
#[wasm_bindgen(js_name = ChatTemplate)]
pub struct WasmChatTemplate {
    inner: ChatTemplate,
}

#[wasm_bindgen(js_class = ChatTemplate)]
impl WasmChatTemplate {
    /// From the text of tokenizer_config.json (its chat_template and special tokens).
    #[wasm_bindgen(js_name = fromTokenizerConfigJson)]
    pub fn from_tokenizer_config_json(json: &str) -> JsResult<WasmChatTemplate> {
        let cfg = text(dart_text::parse_json("tokenizer_config.json", json))?;
        Ok(WasmChatTemplate { inner: text(ChatTemplate::from_config_json(&cfg))? })
    }

    /// Renders messages (JSON text of [{role, content}]) as
    /// apply_chat_template(..., tokenize=False) does.
    pub fn render(&self, messages_json: &str, add_generation_prompt: bool) -> JsResult<String> {
        let messages = text(dart_text::parse_json("messagesJson", messages_json))?;
        text(self.inner.render(&messages, None, add_generation_prompt, None))
    }
}
