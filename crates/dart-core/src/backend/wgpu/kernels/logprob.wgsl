// Log-softmax gathered at the target. P: rows, vocab.
@group(0) @binding(1) var<storage, read_write> LP: array<f32>;
@group(0) @binding(2) var<storage, read_write> LSE: array<f32>;
@group(0) @binding(3) var<storage, read_write> Z: array<f32>;   // logits; gradient in place (bwd)
@group(0) @binding(4) var<storage, read> TGT: array<i32>;
@group(0) @binding(5) var<storage, read> L: array<f32>;          // lse (bwd)
@group(0) @binding(6) var<storage, read> DLP: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    let row = wlin(wid, nwg);
    let v = P[1];
    if (row >= P[0]) { return; }
    let o = row * v;
    var m = NEG_BIG;
    for (var i = t; i < v; i += 256u) { m = max(m, Z[o + i]); }
    red[t] = m;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] = max(red[t], red[t + s]); }
        workgroupBarrier();
    }
    let mx = red[0];
    workgroupBarrier();
    var acc = 0.0;
    for (var i = t; i < v; i += 256u) { acc += exp(Z[o + i] - mx); }
    red[t] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    if (t == 0u) {
        let l = mx + log(red[0]);
        LSE[row] = l;
        let tg = TGT[row];
        if (tg >= 0) { LP[row] = Z[o + u32(tg)] - l; } else { LP[row] = 0.0; }
    }
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    let v = P[1];
    if (e >= P[0] * v) { return; }
    let row = e / v;
    let c = e % v;
    let tg = TGT[row];
    let g = DLP[row];
    if (tg < 0 || g == 0.0) { Z[e] = 0.0; return; }
    var r = -g * exp(Z[e] - L[row]);
    if (u32(tg) == c) { r += g; }
    Z[e] = r;
}
