/**
 * The RL objective, pure (no addon, no Effect services): group-relative
 * advantages and the PPO/GRPO loss with the k3 KL, as dL/dlogp per token
 * (docs/objective.md).
 */
export { AdvantageConfig, defaultAdvantageConfig, groupAdvantages } from "./advantages.ts"
export {
  Aggregation,
  aggregationWeights,
  defaultObjectiveConfig,
  ObjectiveConfig,
  type ObjectiveInput,
  type ObjectiveOutput,
  policyObjective
} from "./ppo.ts"
