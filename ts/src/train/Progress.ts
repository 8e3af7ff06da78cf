/**
 * Progress of long work (steps, rollouts, evaluation) as a service, so that
 * the stages report and the CLI decides how it shows: a bar with ETA on a
 * terminal (cli-progress), a plain line per update otherwise, nothing in
 * tests.
 */
import cliProgress from "cli-progress"
import { Context, Effect, Layer } from "effect"

export interface ProgressTask {
  /** `done` of `total` units finished; `fields` are shown after the bar. */
  readonly update: (done: number, fields?: Record<string, string>) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
}

export interface ProgressShape {
  readonly start: (label: string, total: number) => Effect.Effect<ProgressTask>
  /** A line of its own (e.g. a summary), printed without breaking a bar. */
  readonly log: (line: string) => Effect.Effect<void>
}

export class Progress extends Context.Service<Progress, ProgressShape>()("@dart-rl/ts/Progress") {}

const fieldsText = (fields?: Record<string, string>) =>
  fields === undefined ? "" : Object.entries(fields).map(([k, v]) => `${k} ${v}`).join("  ")

/** Shows nothing. */
export const silent: ProgressShape = {
  start: () => Effect.succeed({ update: () => Effect.void, stop: Effect.void }),
  log: () => Effect.void
}

/** One plain line per update (for logs and pipes), with the elapsed time and an ETA. */
export const plain = (write: (line: string) => void): ProgressShape => ({
  start: (label, total) =>
    Effect.sync(() => {
      const t0 = Date.now()
      return {
        update: (done, fields) =>
          Effect.sync(() => {
            const elapsed = (Date.now() - t0) / 1000
            const eta = done > 0 ? (elapsed / done) * (total - done) : NaN
            write(`${label} ${done}/${total}  ${elapsed.toFixed(1)} s${Number.isFinite(eta) ? `  eta ${eta.toFixed(0)} s` : ""}  ${fieldsText(fields)}`.trimEnd())
          }),
        stop: Effect.void
      }
    }),
  log: (line) => Effect.sync(() => write(line))
})

/** A redrawn bar with ETA on a terminal (stderr). */
export const bar = (stream: NodeJS.WriteStream = process.stderr): ProgressShape => {
  let active: cliProgress.SingleBar | undefined
  return {
    start: (label, total) =>
      Effect.sync(() => {
        const b = new cliProgress.SingleBar(
          { stream, format: `${label} [{bar}] {value}/{total} | {duration_formatted} | eta {eta_formatted} | {fields}`, hideCursor: true, clearOnComplete: false },
          cliProgress.Presets.shades_classic
        )
        b.start(total, 0, { fields: "" })
        active = b
        return {
          update: (done, fields) => Effect.sync(() => b.update(done, { fields: fieldsText(fields) })),
          stop: Effect.sync(() => {
            b.stop()
            if (active === b) active = undefined
          })
        }
      }),
    log: (line) =>
      Effect.sync(() => {
        if (active !== undefined) stream.write("\n")
        stream.write(`${line}\n`)
      })
  }
}

export const layerSilent: Layer.Layer<Progress> = Layer.succeed(Progress)(silent)
export const layerPlain = (write: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Layer.Layer<Progress> =>
  Layer.succeed(Progress)(plain(write))
/** A bar on a terminal, plain lines otherwise. */
export const layerAuto = (stream: NodeJS.WriteStream = process.stderr): Layer.Layer<Progress> =>
  Layer.succeed(Progress)(stream.isTTY ? bar(stream) : plain((l) => stream.write(`${l}\n`)))
