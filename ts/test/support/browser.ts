/**
 * Debian's chromium for the browser tests (scripts/setup.sh installs it):
 * where it is, and DART_SKIP_BROWSER=1, which skips those tests instead of
 * failing them.
 */
import { accessSync, constants } from "node:fs"
import { delimiter, join } from "node:path"

export const SKIP_BROWSER = process.env.DART_SKIP_BROWSER === "1"

/** The first executable `chromium` on PATH. */
export const findChromium = (): string | undefined => {
  for (const folder of (process.env.PATH ?? "").split(delimiter)) {
    if (folder === "") continue
    const candidate = join(folder, "chromium")
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

/** `findChromium`, or an error that says how to get it. */
export const chromiumPath = (): string => {
  const p = findChromium()
  if (p === undefined) {
    throw new Error("chromium is not on PATH: run `bash scripts/setup.sh` (it installs Debian's chromium), or set DART_SKIP_BROWSER=1 to skip this test")
  }
  return p
}
