/**
 * `pnpm pipeline <command>`: the dart-rl command line (effect/cli on Node).
 *
 * For now `train` runs the engine demo (src/demo/EngineDemo.ts) until the RL
 * pipeline lands; further commands (eval, leas, ask, pretrain, index) are added
 * next to it as subcommands.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect, Option } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import * as Engine from "../engine/Engine.ts"
import { runDemo } from "../demo/EngineDemo.ts"

const VERSION = "0.1.0"
const MAX_SEED = 2 ** 31 - 1

const intFlag = (name: string, min: number, max: number, description: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(`${description} (integer in [${min}, ${max}])`),
    Flag.filter(
      (n) => n >= min && n <= max,
      (n) => `--${name} must be an integer in [${min}, ${max}], got ${n}`
    )
  )

const steps = intFlag("steps", 1, 100_000, "optimizer steps").pipe(Flag.withDefault(30))
const seed = intFlag("seed", 0, MAX_SEED, "seed of the model, the adapters and the batch").pipe(Flag.withDefault(0))
const threads = intFlag("threads", 1, 1024, "CPU threads of the engine (default: all cores)").pipe(Flag.optional)
const backend = Flag.ChoiceWithValue("backend", [
  ["cpu", "cpu"],
  ["wgpu", "wgpu"],
  ["auto", "auto"]
] as const).pipe(
  Flag.withDescription("engine backend: cpu (reference), wgpu (WGSL compute), auto (a real GPU, else cpu)"),
  Flag.withDefault("cpu" as const)
)
const lr = Flag.Finite("lr").pipe(
  Flag.withDescription("AdamW learning rate (number in (0, 1])"),
  Flag.filter(
    (x) => x > 0 && x <= 1,
    (x) => `--lr must be a number in (0, 1], got ${x}`
  ),
  Flag.withDefault(1e-2)
)

const toUserError = (error: { readonly _tag: string; readonly message: string; readonly code?: string }) =>
  new CliError.UserError({
    cause: error,
    userMessage: `${error._tag}${error.code ? ` [${error.code}]` : ""}: ${error.message}`
  })

const train = Command.make(
  "train",
  { steps, lr, seed, threads, backend },
  (flags) =>
    runDemo({ steps: flags.steps, lr: flags.lr, seed: flags.seed, vocabSize: Engine.tinyQwen2Config.vocab_size }).pipe(
      Effect.provide(
        Engine.layerRandom(
          Engine.tinyQwen2Config,
          flags.seed,
          Option.match(flags.threads, {
            onNone: () => ({ backend: flags.backend }),
            onSome: (threads) => ({ threads, backend: flags.backend })
          })
        )
      ),
      Effect.mapError(toUserError),
      Effect.asVoid
    )
).pipe(
  Command.withDescription(
    "Train (for now: a short engine demo on a tiny random Qwen2-shaped model with two routed LoRA adapters)"
  )
)

const pipeline = Command.make("pipeline").pipe(
  Command.withDescription("dart-rl: DART/LEAS agentic-RL training pipeline"),
  Command.withSubcommands([train])
)

Command.run(pipeline, { version: VERSION }).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
