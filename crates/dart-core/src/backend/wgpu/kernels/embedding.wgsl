// Token embedding. forward P: total (= rows*d), d, row0, nrows. backward P:
// rows, d, row0, nrows. The table (T, DT) holds vocabulary rows
// row0..row0+nrows (a row block of a split table, or all of it); tokens
// outside it are left to the other blocks' dispatches.
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read> T: array<f32>;
@group(0) @binding(3) var<storage, read> TOK: array<i32>;
@group(0) @binding(4) var<storage, read_write> DT: array<f32>;
@group(0) @binding(5) var<storage, read> DX: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    let d = P[1];
    if (e >= P[0]) { return; }
    let r = e / d;
    let t = u32(TOK[r]) - P[2];
    if (t < P[3]) { X[e] = T[t * d + e % d]; }
}

// One thread per column, tokens in order: repeated tokens sum in a fixed
// order with no atomics (the same order as the CPU reference).
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = lin(gid, nwg);
    let rows = P[0];
    let d = P[1];
    if (c >= d) { return; }
    for (var r = 0u; r < rows; r++) {
        let t = u32(TOK[r]) - P[2];
        if (t < P[3]) {
            let i = t * d + c;
            DT[i] = DT[i] + DX[r * d + c];
        }
    }
}
