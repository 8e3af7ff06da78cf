/** mulberry32: a small seeded PRNG, the same in every JS engine (data order, worlds, fixtures). */
export const prng = (seed: number): (() => number) => {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Fisher-Yates shuffle of `xs` in place, drawing from `next` (one draw per position from the end). */
export const shuffleInPlace = <A>(xs: { [i: number]: A; length: number }, next: () => number): void => {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    const t = xs[i]!
    xs[i] = xs[j]!
    xs[j] = t
  }
}
