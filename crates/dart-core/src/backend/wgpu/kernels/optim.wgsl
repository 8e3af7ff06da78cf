// Gradient norm, clipping and AdamW, all on device. The norm accumulator ACC
// holds [sum of squares, norm, clip factor].
@group(0) @binding(1) var<storage, read_write> ACC: array<f32>;
@group(0) @binding(2) var<storage, read_write> PART: array<f32>;
@group(0) @binding(3) var<storage, read> G: array<f32>;
@group(0) @binding(4) var<storage, read_write> PRM: array<f32>;
@group(0) @binding(5) var<storage, read_write> M1: array<f32>;
@group(0) @binding(6) var<storage, read_write> M2: array<f32>;
@group(0) @binding(7) var<storage, read> SC: array<f32>;

var<workgroup> red: array<f32, 256>;

fn wg_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    return red[0];
}

// Stage 1. P: n. Each workgroup strides over the gradient; PART[wg] = its sum.
@compute @workgroup_size(256)
fn sumsq_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) t: u32) {
    let n = P[0];
    var s = 0.0;
    for (var i = wid.x * 256u + t; i < n; i += nwg.x * 256u) { let v = G[i]; s = fma(v, v, s); }
    let r = wg_sum(t, s);
    if (t == 0u) { PART[wid.x] = r; }
}

// Stage 2. P: parts. One workgroup: ACC[0] += sum of the partials.
@compute @workgroup_size(256)
fn sumsq_final(@builtin(local_invocation_index) t: u32) {
    var s = 0.0;
    for (var i = t; i < P[0]; i += 256u) { s += PART[i]; }
    let r = wg_sum(t, s);
    if (t == 0u) { ACC[0] = ACC[0] + r; }
}

// P: 3 f32 values (bits). ACC = P (a fresh accumulator: [0, 0, 1]).
@compute @workgroup_size(1)
fn acc_set() {
    ACC[0] = pf(0u);
    ACC[1] = pf(1u);
    ACC[2] = pf(2u);
}

// P: max_norm (f32 bits). ACC[1] = norm, ACC[2] = min(1, max / (norm + 1e-6)).
@compute @workgroup_size(1)
fn clip() {
    let norm = sqrt(ACC[0]);
    let mx = pf(0u);
    ACC[1] = norm;
    if (mx > 0.0 && norm > mx) { ACC[2] = mx / (norm + 1e-6); } else { ACC[2] = 1.0; }
}

// P: n, beta1, beta2, 1-beta1, 1-beta2, lr/bc1, sqrt(bc2), 1-lr*wd, eps.
// Gradient scale = SC[2] (the clip factor).
@compute @workgroup_size(256)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = lin(gid, nwg);
    if (i >= P[0]) { return; }
    let g = G[i] * SC[2];
    let m = pf(1u) * M1[i] + pf(3u) * g;
    let v = pf(2u) * M2[i] + pf(4u) * g * g;
    M1[i] = m;
    M2[i] = v;
    PRM[i] = PRM[i] * pf(7u) - pf(5u) * m / (sqrt(v) / pf(6u) + pf(8u));
}
