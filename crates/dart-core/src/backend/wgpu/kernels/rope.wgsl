// Rotary embedding, rotate_half layout, in place. P: rows, heads, head_dim,
// inverse. One thread per (row, head, i < head_dim/2).
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read> POS: array<u32>;
@group(0) @binding(3) var<storage, read> COS: array<f32>;
@group(0) @binding(4) var<storage, read> SIN: array<f32>;

@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    let rows = P[0];
    let heads = P[1];
    let hd = P[2];
    let half = hd / 2u;
    if (e >= rows * heads * half) { return; }
    let i = e % half;
    let rh = e / half; // row * heads + head
    let row = rh / heads;
    let base = rh * hd;
    let p = POS[row];
    let c = COS[p * half + i];
    var s = SIN[p * half + i];
    if (P[3] != 0u) { s = -s; }
    let a = X[base + i];
    let b = X[base + i + half];
    X[base + i] = a * c - b * s;
    X[base + i + half] = b * c + a * s;
}
