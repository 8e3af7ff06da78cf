// Decoding: KV caches [caches, max_len, kv_heads*head_dim]; row s of a call
// belongs to cache ROWC[s] (several rows may share one cache).
// append P: rows, kv_width, max_len. Writes the new k/v row s into cache
// ROWC[s] at position POS[s].
// attend P: rows, heads, kv_heads, head_dim, scale, max_len. Single-token
// attention of row s's query over its cache rows 0..=POS[s].
@group(0) @binding(1) var<storage, read_write> O1: array<f32>;  // cache k (append) / out (attend)
@group(0) @binding(2) var<storage, read_write> O2: array<f32>;  // cache v (append) / lse (attend)
@group(0) @binding(3) var<storage, read> IK: array<f32>;        // new k (append) / q (attend)
@group(0) @binding(4) var<storage, read> IV: array<f32>;        // new v (append)
@group(0) @binding(5) var<storage, read> POS: array<u32>;
@group(0) @binding(6) var<storage, read> CK: array<f32>;        // cache k (attend)
@group(0) @binding(7) var<storage, read> CV: array<f32>;        // cache v (attend)
@group(0) @binding(8) var<storage, read> ROWC: array<u32>;      // cache of each row

@compute @workgroup_size(256)
fn append(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    let kw = P[1];
    if (e >= P[0] * kw) { return; }
    let s = e / kw;
    let c = e % kw;
    let dst = (ROWC[s] * P[2] + POS[s]) * kw + c;
    O1[dst] = IK[e];
    O2[dst] = IV[e];
}

const CH: u32 = 64u;
var<workgroup> sa: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn wg_reduce(t: u32, v: f32, is_max: bool) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (t < s) {
            if (is_max) { red[t] = max(red[t], red[t + s]); } else { red[t] += red[t + s]; }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) t: u32) {
    let heads = P[1];
    let hd = P[3];
    let w = wlin(wid, nwg);
    if (w >= P[0] * heads) { return; }
    let sess = w / heads;
    let h = w % heads;
    let g = h / (heads / P[2]);
    let qw = heads * hd;
    let kw = P[2] * hd;
    let scale = pf(4u);
    let cache0 = ROWC[sess] * P[5] * kw;
    let qo = sess * qw + h * hd;
    let last = POS[sess];
    var m = NEG_BIG;
    var l = 0.0;
    var acc: array<f32, 4>;
    for (var j0 = 0u; j0 <= last; j0 += CH) {
        let j = j0 + t;
        var s = NEG_BIG;
        if (j <= last) {
            let ko = cache0 + j * kw + g * hd;
            var q = 0.0;
            for (var d = 0u; d < hd; d++) { q = fma(IK[qo + d], CK[ko + d], q); }
            s = q * scale;
        }
        let nm = max(m, wg_reduce(t, s, true));
        var p = 0.0;
        if (j <= last) { p = exp(s - nm); }
        sa[t] = p;
        let alpha = exp(m - nm);
        l = l * alpha + wg_reduce(t, p, false);
        let cnt = min(CH, last + 1u - j0);
        for (var c = 0u; c < 4u; c++) {
            let d = t + c * CH;
            if (d < hd) {
                var a = acc[c] * alpha;
                for (var u = 0u; u < cnt; u++) { a = fma(sa[u], CV[cache0 + (j0 + u) * kw + g * hd + d], a); }
                acc[c] = a;
            }
        }
        m = nm;
        workgroupBarrier();
    }
    for (var c = 0u; c < 4u; c++) {
        let d = t + c * CH;
        if (d < hd) { O1[qo + d] = acc[c] / l; }
    }
    if (t == 0u) { O2[sess * heads + h] = m + log(l); }
}
