// Causal grouped-query attention over packed sequences. Row r belongs to the
// sequence [META[2r], META[2r+1]). P: rows, heads, kv_heads, head_dim,
// scale (f32 bits). Keys/queries are walked in chunks of 64 (one per thread);
// each thread owns head dimensions t, t+64, t+128, t+192 (head_dim <= 256).
@group(0) @binding(1) var<storage, read_write> O1: array<f32>;  // out (fwd) / dq / dk
@group(0) @binding(2) var<storage, read_write> O2: array<f32>;  // lse (fwd) / D (bwd_d) / dv
@group(0) @binding(3) var<storage, read> Q: array<f32>;
@group(0) @binding(4) var<storage, read> K: array<f32>;
@group(0) @binding(5) var<storage, read> V: array<f32>;
@group(0) @binding(6) var<storage, read> META: array<u32>;
@group(0) @binding(7) var<storage, read> DO: array<f32>;       // dout
@group(0) @binding(8) var<storage, read> LS: array<f32>;       // lse (bwd)
@group(0) @binding(9) var<storage, read> DD: array<f32>;       // D = rowsum(dout * out) (bwd)
@group(0) @binding(10) var<storage, read> OUT: array<f32>;     // out (bwd_d)

const CH: u32 = 64u;
var<workgroup> sa: array<f32, 64>;
var<workgroup> sb: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn wg_max(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] = max(red[t], red[t + s]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn wg_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn dot_qk(qo: u32, ko: u32, hd: u32) -> f32 {
    var s = 0.0;
    for (var d = 0u; d < hd; d++) { s = fma(Q[qo + d], K[ko + d], s); }
    return s;
}

// One workgroup per (row, head): online softmax over the row's keys.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    let heads = P[1];
    let hd = P[3];
    let w = wlin(wid, nwg);
    if (w >= P[0] * heads) { return; }
    let row = w / heads;
    let h = w % heads;
    let g = h / (heads / P[2]);
    let qw = heads * hd;
    let kw = P[2] * hd;
    let scale = pf(4u);
    let qo = row * qw + h * hd;
    var m = NEG_BIG;
    var l = 0.0;
    var acc: array<f32, 4>;
    for (var j0 = META[2u * row]; j0 <= row; j0 += CH) {
        let j = j0 + t;
        var s = NEG_BIG;
        if (j <= row) { s = dot_qk(qo, j * kw + g * hd, hd) * scale; }
        let nm = max(m, wg_max(t, s));
        var p = 0.0;
        if (j <= row) { p = exp(s - nm); }
        sa[t] = p;
        let alpha = exp(m - nm);
        l = l * alpha + wg_sum(t, p);
        let cnt = min(CH, row + 1u - j0);
        for (var c = 0u; c < 4u; c++) {
            let d = t + c * CH;
            if (d < hd) {
                var a = acc[c] * alpha;
                for (var u = 0u; u < cnt; u++) { a = fma(sa[u], V[(j0 + u) * kw + g * hd + d], a); }
                acc[c] = a;
            }
        }
        m = nm;
        workgroupBarrier();
    }
    let inv = 1.0 / l;
    for (var c = 0u; c < 4u; c++) {
        let d = t + c * CH;
        if (d < hd) { O1[qo + d] = acc[c] * inv; }
    }
    if (t == 0u) { O2[row * heads + h] = m + log(l); }
}

// D[row, h] = dot(dout, out). One thread per (row, head).
@compute @workgroup_size(256)
fn backward_d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    let heads = P[1];
    let hd = P[3];
    if (e >= P[0] * heads) { return; }
    let o = e * hd; // (row * heads + h) * hd
    var s = 0.0;
    for (var d = 0u; d < hd; d++) { s = fma(DO[o + d], OUT[o + d], s); }
    O2[e] = s;
}

// dq: one workgroup per (row, head), walking the row's keys.
@compute @workgroup_size(64)
fn backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
    let heads = P[1];
    let hd = P[3];
    let w = wlin(wid, nwg);
    if (w >= P[0] * heads) { return; }
    let row = w / heads;
    let h = w % heads;
    let g = h / (heads / P[2]);
    let qw = heads * hd;
    let kw = P[2] * hd;
    let scale = pf(4u);
    let qo = row * qw + h * hd;
    let lse = LS[row * heads + h];
    let dd = DD[row * heads + h];
    var acc: array<f32, 4>;
    for (var j0 = META[2u * row]; j0 <= row; j0 += CH) {
        let j = j0 + t;
        var ds = 0.0;
        if (j <= row) {
            let ko = j * kw + g * hd;
            let p = exp(dot_qk(qo, ko, hd) * scale - lse);
            var dp = 0.0;
            for (var d = 0u; d < hd; d++) { dp = fma(DO[qo + d], V[ko + d], dp); }
            ds = p * (dp - dd) * scale;
        }
        sa[t] = ds;
        workgroupBarrier();
        let cnt = min(CH, row + 1u - j0);
        for (var c = 0u; c < 4u; c++) {
            let d = t + c * CH;
            if (d < hd) {
                var a = acc[c];
                for (var u = 0u; u < cnt; u++) { a = fma(sa[u], K[(j0 + u) * kw + g * hd + d], a); }
                acc[c] = a;
            }
        }
        workgroupBarrier();
    }
    for (var c = 0u; c < 4u; c++) {
        let d = t + c * CH;
        if (d < hd) { O1[qo + d] = acc[c]; }
    }
}

// dk, dv: one workgroup per (key row, kv head), walking the later queries of
// the same sequence for every query head of the group.
@compute @workgroup_size(64)
fn backward_dkdv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) t: u32) {
    let heads = P[1];
    let kvh = P[2];
    let hd = P[3];
    let w = wlin(wid, nwg);
    if (w >= P[0] * kvh) { return; }
    let j = w / kvh;
    let g = w % kvh;
    let group = heads / kvh;
    let qw = heads * hd;
    let kw = kvh * hd;
    let scale = pf(4u);
    let ko = j * kw + g * hd;
    let end = META[2u * j + 1u];
    var ak: array<f32, 4>;
    var av: array<f32, 4>;
    for (var h = g * group; h < (g + 1u) * group; h++) {
        for (var i0 = j; i0 < end; i0 += CH) {
            let i = i0 + t;
            var p = 0.0;
            var ds = 0.0;
            if (i < end) {
                let qo = i * qw + h * hd;
                p = exp(dot_qk(qo, ko, hd) * scale - LS[i * heads + h]);
                var dp = 0.0;
                for (var d = 0u; d < hd; d++) { dp = fma(DO[qo + d], V[ko + d], dp); }
                ds = p * (dp - DD[i * heads + h]) * scale;
            }
            sa[t] = p;
            sb[t] = ds;
            workgroupBarrier();
            let cnt = min(CH, end - i0);
            for (var c = 0u; c < 4u; c++) {
                let d = t + c * CH;
                if (d < hd) {
                    var a = ak[c];
                    var b = av[c];
                    for (var u = 0u; u < cnt; u++) {
                        let qo = (i0 + u) * qw + h * hd + d;
                        a = fma(sb[u], Q[qo], a);
                        b = fma(sa[u], DO[qo], b);
                    }
                    ak[c] = a;
                    av[c] = b;
                }
            }
            workgroupBarrier();
        }
    }
    for (var c = 0u; c < 4u; c++) {
        let d = t + c * CH;
        if (d < hd) {
            O1[ko + d] = ak[c];
            O2[ko + d] = av[c];
        }
    }
}
