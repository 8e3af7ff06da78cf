//! On-disk formats, never pickle: a Hugging Face model folder, PEFT adapter
//! folders (adapter_model.safetensors + adapter_config.json, loadable by
//! PEFT/vLLM) and the optimizer + RNG state as safetensors with metadata.
use crate::adapter::{parse_targets, Adapter, AdapterSpec};
use crate::config::ModelConfig;
use crate::engine::{Engine, EngineOptions};
use crate::error::{DartError, Result};
use crate::float::Float;
use crate::io::{write_atomic, write_safetensors, TensorStore};
use crate::optim::AdamState;
use crate::weights::Weights;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| DartError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| DartError::Io(format!("{}: {e}", path.display())))
}

/// Loads config.json + safetensors weights (f32/bf16/f16, single or sharded).
pub fn load_model<T: Float>(dir: &Path, opts: &EngineOptions) -> Result<Engine<T>> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| DartError::io(&cfg_path, e))?;
    let cfg = ModelConfig::from_json(&text)?;
    model_from_store(cfg, &TensorStore::open_model_dir(dir)?, opts)
}

/// The same from memory: config.json's text and one model.safetensors file's
/// bytes (the WebAssembly build, whose host reads the files).
pub fn model_from_bytes<T: Float>(config_json: &str, safetensors: Vec<u8>, opts: &EngineOptions) -> Result<Engine<T>> {
    let cfg = ModelConfig::from_json(config_json)?;
    model_from_store(cfg, &TensorStore::from_bytes("model.safetensors", safetensors)?, opts)
}

fn model_from_store<T: Float>(cfg: ModelConfig, store: &TensorStore, opts: &EngineOptions) -> Result<Engine<T>> {
    let w: Weights<T> = Weights::build(&cfg, |name, shape| store.get(name, shape))?;
    check_unread_tensors(&cfg, store, &w)?;
    Engine::new(cfg, w, opts)
}

/// A tensor in the files that the model does not read means the config and
/// the weights disagree (e.g. `mlp.gate_proj.bias` without `mlp_bias`):
/// refused rather than silently dropped. Two kinds are what transformers
/// itself ignores: RoPE's `rotary_emb.inv_freq` buffers of old checkpoints
/// (recomputed from the config) and, with tied embeddings, an `lm_head.weight`
/// equal to the embeddings.
fn check_unread_tensors<T: Float>(cfg: &ModelConfig, store: &TensorStore, w: &Weights<T>) -> Result<()> {
    let read: std::collections::HashSet<String> = Weights::<T>::names_shapes(cfg).into_iter().map(|(n, _)| n).collect();
    let mut unread = Vec::new();
    for name in store.names() {
        if read.contains(&name) || name.ends_with("rotary_emb.inv_freq") {
            continue;
        }
        if name == "lm_head.weight" && cfg.tie_word_embeddings {
            let (_, head) = store.get_any::<T>(&name)?;
            if head == w.embed {
                continue;
            }
            return Err(DartError::Config(
                "tie_word_embeddings = true, but the weights hold an lm_head.weight that differs from model.embed_tokens.weight; \
                 set tie_word_embeddings to false if the head is its own matrix"
                    .into(),
            ));
        }
        unread.push(name);
    }
    if unread.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = unread.iter().take(8).map(String::as_str).collect();
    Err(DartError::Config(format!(
        "the weights hold {} tensor(s) that config.json does not describe, so the model would not read them: {}{} \
         (config: model_type {:?}, attention_bias {:?}, mlp_bias {:?}, tie_word_embeddings {}); \
         fix config.json so it says what the weights are",
        unread.len(),
        shown.join(", "),
        if unread.len() > shown.len() { ", ..." } else { "" },
        cfg.model_type.as_deref().unwrap_or("llama"),
        cfg.attention_bias,
        cfg.mlp_bias,
        cfg.tie_word_embeddings
    )))
}

/// Writes config.json and model.safetensors (f32) atomically.
pub fn save_model<T: Float>(engine: &Engine<T>, dir: &Path) -> Result<()> {
    let cfg = engine.config();
    let ns = Weights::<T>::names_shapes(cfg);
    let w = engine.weights();
    let tensors: Vec<(String, Vec<usize>, &[T])> =
        ns.into_iter().zip(w.fields()).map(|((n, s), d)| (n, s, d.as_slice())).collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors, BTreeMap::from([("format".into(), "pt".into())]))?;
    write_atomic(&dir.join("config.json"), cfg.to_json().as_bytes())
}

pub fn save_adapter<T: Float>(engine: &Engine<T>, slot: usize, dir: &Path, base_model: &str) -> Result<()> {
    let a = engine.adapter(slot)?;
    let tensors: Vec<(String, Vec<usize>, &[T])> =
        a.names_shapes().into_iter().zip(a.params()).map(|((n, s), d)| (n, s, d.as_slice())).collect();
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors, BTreeMap::from([("format".into(), "pt".into())]))?;
    let targets: Vec<&str> = a.spec.targets.iter().map(|p| p.name()).collect();
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": a.spec.rank,
        "lora_alpha": a.spec.alpha,
        "lora_dropout": 0.0,
        "target_modules": targets,
        "bias": "none",
        "use_rslora": a.spec.use_rslora,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    });
    write_atomic(&dir.join("adapter_config.json"), serde_json::to_string_pretty(&config).expect("json").as_bytes())
}

/// Reads a PEFT LoRA folder into a new slot; returns the slot index.
pub fn load_adapter<T: Float>(engine: &mut Engine<T>, dir: &Path) -> Result<usize> {
    let cpath = dir.join("adapter_config.json");
    let c = read_json(&cpath)?;
    let bad = |what: &str| DartError::Config(format!("{}: {what}", cpath.display()));
    if let Some(t) = c.get("peft_type").and_then(|v| v.as_str()) {
        if t != "LORA" {
            return Err(bad(&format!("peft_type = {t:?}, expected \"LORA\"")));
        }
    }
    let rank = c.get("r").and_then(|v| v.as_u64()).ok_or_else(|| bad("\"r\" missing or not an integer"))? as usize;
    let alpha = c.get("lora_alpha").and_then(|v| v.as_f64()).ok_or_else(|| bad("\"lora_alpha\" missing"))?;
    for key in ["rank_pattern", "alpha_pattern"] {
        if c.get(key).and_then(|v| v.as_object()).is_some_and(|o| !o.is_empty()) {
            return Err(bad(&format!("{key} is not empty; per-module ranks are not supported")));
        }
    }
    for key in ["use_dora", "lora_bias"] {
        if c.get(key).and_then(|v| v.as_bool()) == Some(true) {
            return Err(bad(&format!("{key} = true is not supported (plain LoRA only)")));
        }
    }
    if c.get("layers_to_transform").is_some_and(|v| !v.is_null()) {
        return Err(bad("layers_to_transform is set; expected every layer to be adapted"));
    }
    let targets: Vec<String> = match c.get("target_modules") {
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        Some(serde_json::Value::String(s)) => return Err(bad(&format!("target_modules is a regex {s:?}; expected a list"))),
        _ => return Err(bad("\"target_modules\" missing")),
    };
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let spec = AdapterSpec {
        rank,
        alpha,
        targets: parse_targets(&refs)?,
        seed: 0,
        b_init_std: 0.0,
        use_rslora: c.get("use_rslora").and_then(|v| v.as_bool()).unwrap_or(false),
    };
    let mut a = Adapter::<T>::new(engine.config(), spec)?;
    let store = TensorStore::open_files(&[dir.join("adapter_model.safetensors")])?;
    let ns = a.names_shapes();
    for ((name, shape), (p, _)) in ns.iter().zip(a.params_and_grads_mut()) {
        *p = store.get(name, shape)?;
    }
    Ok(engine.push_adapter(a))
}

const STATE_FORMAT: &str = "dart-rl-optimizer/1";

fn rng_to_string(r: &ChaCha8Rng) -> String {
    let seed: String = r.get_seed().iter().map(|b| format!("{b:02x}")).collect();
    format!("{seed}:{}:{}", r.get_stream(), r.get_word_pos())
}

fn rng_from_string(s: &str) -> Result<ChaCha8Rng> {
    use rand::SeedableRng;
    let bad = || DartError::Io(format!("rng state {s:?} is malformed"));
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 || parts[0].len() != 64 {
        return Err(bad());
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&parts[0][2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    let mut r = ChaCha8Rng::from_seed(seed);
    r.set_stream(parts[1].parse().map_err(|_| bad())?);
    r.set_word_pos(parts[2].parse().map_err(|_| bad())?);
    Ok(r)
}

/// optimizer.safetensors: AdamW moments of every slot (and of the base when
/// trained), step counts and the engine RNG in the metadata.
pub fn save_state<T: Float>(engine: &Engine<T>, dir: &Path) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, &[T])> = Vec::new();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), STATE_FORMAT.to_string());
    meta.insert("slots".to_string(), engine.num_adapters().to_string());
    meta.insert("rng".to_string(), rng_to_string(engine.rng()));
    let states: Vec<AdamState<T>> = (0..engine.num_adapters()).map(|s| engine.optimizer_state(s)).collect::<Result<_>>()?;
    let base_state = engine.base_optimizer_state();
    for (slot, st) in states.iter().enumerate() {
        meta.insert(format!("slot.{slot}.step"), st.step.to_string());
        for (i, (name, shape)) in engine.adapter_names_shapes(slot)?.into_iter().enumerate() {
            tensors.push((format!("slot.{slot}.{name}.exp_avg"), shape.clone(), &st.m[i]));
            tensors.push((format!("slot.{slot}.{name}.exp_avg_sq"), shape, &st.v[i]));
        }
    }
    if let Some(st) = &base_state {
        meta.insert("base.step".to_string(), st.step.to_string());
        for (i, (name, shape)) in Weights::<T>::names_shapes(engine.config()).into_iter().enumerate() {
            tensors.push((format!("base.{name}.exp_avg"), shape.clone(), &st.m[i]));
            tensors.push((format!("base.{name}.exp_avg_sq"), shape, &st.v[i]));
        }
    }
    write_safetensors(&dir.join("optimizer.safetensors"), &tensors, meta)
}

pub fn load_state<T: Float>(engine: &mut Engine<T>, dir: &Path) -> Result<()> {
    let path = dir.join("optimizer.safetensors");
    let store = TensorStore::open_files(&[path.clone()])?;
    let meta = store.metadata().clone();
    let get = |k: &str| meta.get(k).cloned().ok_or_else(|| DartError::Io(format!("{}: metadata {k:?} missing", path.display())));
    if get("format")? != STATE_FORMAT {
        return Err(DartError::Io(format!("{}: format is not {STATE_FORMAT}", path.display())));
    }
    let slots: usize = get("slots")?.parse().map_err(|_| DartError::Io("slots is not a number".into()))?;
    if slots != engine.num_adapters() {
        return Err(DartError::State(format!(
            "{} holds state for {slots} adapters, but the engine has {}: load the adapters first",
            path.display(),
            engine.num_adapters()
        )));
    }
    for slot in 0..slots {
        let names = engine.adapter_names_shapes(slot)?;
        let step: u64 = get(&format!("slot.{slot}.step"))?.parse().map_err(|_| DartError::Io("step".into()))?;
        let mut st = AdamState { step, m: Vec::new(), v: Vec::new() };
        for (name, shape) in names.iter() {
            st.m.push(store.get(&format!("slot.{slot}.{name}.exp_avg"), shape)?);
            st.v.push(store.get(&format!("slot.{slot}.{name}.exp_avg_sq"), shape)?);
        }
        engine.set_optimizer_state(slot, &st)?;
    }
    if meta.contains_key("base.step") {
        let names = Weights::<T>::names_shapes(engine.config());
        let step: u64 = get("base.step")?.parse().map_err(|_| DartError::Io("base.step".into()))?;
        let mut st = AdamState { step, m: Vec::new(), v: Vec::new() };
        for (name, shape) in names.iter() {
            st.m.push(store.get(&format!("base.{name}.exp_avg"), shape)?);
            st.v.push(store.get(&format!("base.{name}.exp_avg_sq"), shape)?);
        }
        engine.set_base_optimizer_state(&st)?;
    }
    *engine.rng_mut() = rng_from_string(&get("rng")?)?;
    Ok(())
}
