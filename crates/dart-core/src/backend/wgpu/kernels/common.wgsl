// Shared prelude, prepended to every kernel file. Binding 0 of every entry
// point is its parameter block: u32 words, f32 values stored as bits.
@group(0) @binding(0) var<storage, read> P: array<u32>;

fn pf(i: u32) -> f32 {
    return bitcast<f32>(P[i]);
}

// Linear index of a thread in a 1-D grid of 256-wide workgroups that the
// host may fold into (x, y) to stay under the per-dimension limit.
fn lin(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * 256u + gid.x;
}

// Linear index of a workgroup in a grid folded into (x, y).
fn wlin(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

const NEG_BIG: f32 = -3.0e38;
