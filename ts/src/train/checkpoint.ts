/**
 * Checkpoints written so that a crash at any moment leaves either the
 * previous complete checkpoint or the new one, never a half-written one
 * that `--resume` would load:
 *
 * 1. everything is written into `checkpoints/.partial-step-N/` and every
 *    file is fsynced;
 * 2. the folder is renamed to `checkpoints/step-N/` (and the parent fsynced);
 * 3. `manifest.json` (each file's size and SHA-256) is written last, through
 *    a temp file, fsync and rename.
 *
 * A checkpoint is complete when its manifest exists and every file it lists
 * has that size and hash; `latest` returns the newest complete one and
 * ignores the rest (a leftover `.partial-*` folder is deleted at the next
 * write).
 */
import { Effect, Schema } from "effect"
import { createHash } from "node:crypto"
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join, relative } from "node:path"

export const Manifest = Schema.Struct({
  format: Schema.Literal("dart-rl-checkpoint-1"),
  /** Steps completed when it was written (the next step to run). */
  step: Schema.Int,
  files: Schema.Array(Schema.Struct({ path: Schema.String, bytes: Schema.Int, sha256: Schema.String }))
})
export type Manifest = typeof Manifest.Type

export class CheckpointError extends Schema.TaggedError<CheckpointError>()("CheckpointError", {
  path: Schema.String,
  message: Schema.String
}) {}

const NAME = /^step-(\d{9})$/
export const checkpointName = (step: number): string => `step-${String(step).padStart(9, "0")}`

const listFiles = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]))

const fsyncPath = (path: string) => {
  const fd = openSync(path, "r")
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex")

/** Writes `text` to `file` atomically (temp file, fsync, rename, fsync of the folder). */
export const writeFileAtomic = (file: string, text: string): void => {
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(tmp, text)
  fsyncPath(tmp)
  renameSync(tmp, file)
  fsyncPath(join(file, ".."))
}

/** Writes checkpoint `step` under `root` (see the module comment); `fill` writes its files into the folder it is given. */
export const write = <E, R>(
  root: string,
  step: number,
  fill: (dir: string) => Effect.Effect<void, E, R>
): Effect.Effect<string, E | CheckpointError, R> =>
  Effect.gen(function*() {
    const final = join(root, checkpointName(step))
    const partial = join(root, `.partial-${checkpointName(step)}`)
    yield* attempt(partial, () => {
      for (const e of existsSync(root) ? readdirSync(root) : []) if (e.startsWith(".partial-")) rmSync(join(root, e), { recursive: true, force: true })
      rmSync(final, { recursive: true, force: true })
    })
    yield* fill(partial)
    yield* attempt(partial, () => {
      const files = listFiles(partial).sort()
      for (const f of files) fsyncPath(f)
      fsyncPath(partial)
      renameSync(partial, final)
      fsyncPath(root)
      const manifest: Manifest = {
        format: "dart-rl-checkpoint-1",
        step,
        files: files.map((f) => {
          const moved = join(final, relative(partial, f))
          return { path: relative(partial, f), bytes: statSync(moved).size, sha256: sha256(moved) }
        })
      }
      writeFileAtomic(join(final, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n")
    })
    return final
  })

const attempt = <A>(path: string, f: () => A) =>
  Effect.try({ try: f, catch: (e) => new CheckpointError({ path, message: e instanceof Error ? e.message : String(e) }) })

/** Why a checkpoint folder is not complete, or undefined when it is. */
export const incomplete = (dir: string): string | undefined => {
  const file = join(dir, "manifest.json")
  if (!existsSync(file)) return "no manifest.json (the write did not finish)"
  let manifest: Manifest
  try {
    manifest = Schema.decodeUnknownSync(Manifest)(JSON.parse(readFileSync(file, "utf8")))
  } catch (e) {
    return `manifest.json unreadable: ${e instanceof Error ? e.message : String(e)}`
  }
  for (const f of manifest.files) {
    const p = join(dir, f.path)
    if (!existsSync(p)) return `${f.path} is missing`
    if (statSync(p).size !== f.bytes) return `${f.path} has ${statSync(p).size} bytes, the manifest says ${f.bytes}`
    if (sha256(p) !== f.sha256) return `${f.path} does not match its SHA-256 in the manifest`
  }
  return undefined
}

/** The newest complete checkpoint under `root` (its folder and step), with the incomplete ones skipped. */
export const latest = (root: string): { readonly dir: string; readonly step: number; readonly skipped: ReadonlyArray<string> } | undefined => {
  if (!existsSync(root)) return undefined
  const steps = readdirSync(root).flatMap((n) => {
    const m = NAME.exec(n)
    return m === null ? [] : [{ name: n, step: Number(m[1]) }]
  }).sort((a, b) => b.step - a.step)
  const skipped: Array<string> = []
  for (const s of steps) {
    const why = incomplete(join(root, s.name))
    if (why === undefined) return { dir: join(root, s.name), step: s.step, skipped }
    skipped.push(`${s.name}: ${why}`)
  }
  return undefined
}

/** The checkpoint folders under `root` that are not complete, each with the reason. */
export const incompleteAll = (root: string): ReadonlyArray<string> =>
  existsSync(root)
    ? readdirSync(root).filter((n) => NAME.test(n)).sort().flatMap((n) => {
      const why = incomplete(join(root, n))
      return why === undefined ? [] : [`${n}: ${why}`]
    })
    : []

/** Deletes all but the newest `keep` complete checkpoints. */
export const prune = (root: string, keep: number): void => {
  const complete = readdirSync(root).filter((n) => NAME.test(n) && incomplete(join(root, n)) === undefined).sort().reverse()
  for (const n of complete.slice(keep)) rmSync(join(root, n), { recursive: true, force: true })
}
