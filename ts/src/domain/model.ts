/**
 * What the TypeScript side knows of the engine's vocabulary, in one place:
 * the LoRA target names, the role codes of tokens, and the Hugging Face
 * `config.json` schema of the model families the engine computes.
 *
 * The engine (Rust) is the authority on each: these are checked against the
 * addon by ts/test/native-types.test.ts, so a change on one side fails there.
 * Pure data: imports no addon.
 */
import { Schema } from "effect"

/** The seven projections LoRA can target: PEFT module names, as in the adapters' tensor names. */
export const LORA_TARGETS = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj"
] as const
export type LoraTarget = (typeof LORA_TARGETS)[number]

/** Role codes of tokens: 0 P (prompt), 1 R (reasoning), 2 A (tool call), 3 O (tool output). */
export const ROLE = { P: 0, R: 1, A: 2, O: 3 } as const
export type RoleCode = (typeof ROLE)[keyof typeof ROLE]

/** Source codes of `assignRoles`: who wrote a token. */
export const SOURCE = { prompt: 0, model: 1, tool: 2 } as const

/** The model families (`model_type`) the engine computes. */
export const MODEL_TYPES = ["llama", "qwen2", "qwen3"] as const
export type ModelType = (typeof MODEL_TYPES)[number]

/**
 * RoPE frequency scaling as in `rope_parameters` (transformers 5) or
 * `rope_scaling`: default, linear, llama3 and yarn are implemented; the
 * engine refuses other types (DART_CONFIG). Extra fields are passed through
 * for the engine to check.
 */
export const RopeParameters = Schema.StructWithRest(
  Schema.Struct({
    rope_type: Schema.optional(Schema.String),
    type: Schema.optional(Schema.String),
    rope_theta: Schema.optional(Schema.Finite),
    factor: Schema.optional(Schema.Finite)
  }),
  [Schema.Record(Schema.String, Schema.Unknown)]
)

/**
 * The `config.json` fields the engine implements (Hugging Face names). The
 * engine refuses, with DART_CONFIG naming the key, every key that would
 * change the computation and that it does not implement; keys that do not
 * (token ids, dtype, ...) are accepted there.
 */
export const ModelConfig = Schema.Struct({
  model_type: Schema.optional(Schema.Literals(MODEL_TYPES)),
  architectures: Schema.optional(Schema.Array(Schema.String)),
  vocab_size: Schema.Int,
  hidden_size: Schema.Int,
  intermediate_size: Schema.Int,
  num_hidden_layers: Schema.Int,
  num_attention_heads: Schema.Int,
  num_key_value_heads: Schema.optional(Schema.Int),
  /** Default hidden_size / heads (Llama, Qwen2) or 128 (Qwen3). */
  head_dim: Schema.optional(Schema.Int),
  rms_norm_eps: Schema.optional(Schema.Finite),
  rope_theta: Schema.optional(Schema.Finite),
  rope_parameters: Schema.optional(RopeParameters),
  rope_scaling: Schema.optional(Schema.NullOr(RopeParameters)),
  tie_word_embeddings: Schema.optional(Schema.Boolean),
  /** Llama, Qwen3: bias on q/k/v/o. Qwen2 always has q/k/v biases. */
  attention_bias: Schema.optional(Schema.Boolean),
  /** Llama: bias on gate/up/down. */
  mlp_bias: Schema.optional(Schema.Boolean),
  max_position_embeddings: Schema.optional(Schema.Int),
  hidden_act: Schema.optional(Schema.Literals(["silu", "swish"])),
  /** Must be 0 when given. */
  attention_dropout: Schema.optional(Schema.Finite),
  /** Must be false when given. */
  use_sliding_window: Schema.optional(Schema.Boolean)
})
export type ModelConfig = typeof ModelConfig.Type
