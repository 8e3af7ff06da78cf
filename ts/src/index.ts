/**
 * @dart-rl/ts: the pipeline's public entry. Each stage is a service
 * (`Context.Service` tag + `make` + `layer`) that another Effect program can
 * provide itself, running the rest unchanged (examples/embedding.ts):
 *
 *   Engine    the routed-LoRA engine (the addon)            engine/Engine.ts
 *   Tokenizer tokenizer.json + chat template (the addon)    text/Tokenizer.ts
 *   Search    built-in BM25 index or a retrieval server     search/
 *   Rollout   multi-turn search episodes, G per prompt      rollout/Rollout.ts
 *   Reward    EM / Search-R1 format reward                  reward/Reward.ts
 *   Update    GRPO/PPO to dL/dlogp, accumulate, AdamW       update/Update.ts
 *   Progress  bars, plain lines or nothing                  train/Progress.ts
 *   Leas      LEAS statistics and report from six variants' scores  leas/Leas.ts
 *
 * and the loop (`train`), evaluation (`evaluate`), the config schema
 * (`TrainConfig`), the pure rules (modes, objective, schedule, reward rules,
 * agent format) and the layers of a whole run (`pipelineLayer`).
 */
export * as Engine from "./engine/Engine.ts"
export * as Tokenizer from "./text/Tokenizer.ts"
export * as Search from "./search/index.ts"
export * as Rollout from "./rollout/Rollout.ts"
export * as Agent from "./rollout/agent.ts"
export * as Reward from "./reward/Reward.ts"
export * as RewardRules from "./reward/rules.ts"
export * as Update from "./update/Update.ts"
export * as Schedule from "./update/schedule.ts"
export * as Objective from "./objective/index.ts"
export * as Modes from "./routing/modes.ts"
export * as Progress from "./train/Progress.ts"
export * as Leas from "./leas/Leas.ts"
export * as LeasAlgebra from "./leas/algebra.ts"
export { defaultLeasOptions, type LeasRunOptions, runLeas } from "./leas/run.ts"
export { compare, type CompareOptions, type CompareResult } from "./compare/Compare.ts"
export { ensureRun, evaluateOnce } from "./train/runs.ts"
export * as Checkpoint from "./train/checkpoint.ts"
export * as Dataset from "./data/dataset.ts"
export * as Domain from "./domain/model.ts"
export { evaluate, type EvalSummary, type QuestionResult, summarize } from "./train/evaluate.ts"
export { ConfigError, decodeConfig, defaultTrainConfig, FIXTURE_DIR, WORLD_DIR, mergeConfig, readConfigFile, resolveConfig, SearchConfig, TrainConfig } from "./train/config.ts"
export { checkPaths, engineLayer, type Overrides, pipelineLayer, searchLayer } from "./train/layers.ts"
export { setupPlan, PLANS, type PlanChoice, runAdapters } from "./train/plans.ts"
export { loadRecords, setupAdapters, slotNames, train, TrainError, type TrainOptions, type TrainSummary } from "./train/Train.ts"
