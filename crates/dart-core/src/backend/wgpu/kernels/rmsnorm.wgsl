// RMSNorm. P: rows, d, eps (f32 bits). One 256-thread workgroup per row.
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;   // y (fwd) / dx (bwd)
@group(0) @binding(2) var<storage, read_write> R: array<f32>;   // rstd (written fwd)
@group(0) @binding(3) var<storage, read> X: array<f32>;
@group(0) @binding(4) var<storage, read> W: array<f32>;
@group(0) @binding(5) var<storage, read> DY: array<f32>;
@group(0) @binding(6) var<storage, read> RS: array<f32>;        // rstd (read bwd)
@group(0) @binding(7) var<storage, read_write> DW: array<f32>;

var<workgroup> red: array<f32, 256>;

fn reduce_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    let row = wlin(wid, nwg);
    let d = P[1];
    if (row >= P[0]) { return; }
    let o = row * d;
    var s = 0.0;
    for (var i = t; i < d; i += 256u) { let v = X[o + i]; s += v * v; }
    let ms = reduce_sum(t, s) / f32(d);
    let r = 1.0 / sqrt(ms + pf(2u));
    for (var i = t; i < d; i += 256u) { Y[o + i] = W[i] * (X[o + i] * r); }
    if (t == 0u) { R[row] = r; }
}

// dx = r (w dy) - r^3/d x sum(w dy x).
@compute @workgroup_size(256)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
    let row = wlin(wid, nwg);
    let d = P[1];
    if (row >= P[0]) { return; }
    let o = row * d;
    var s = 0.0;
    for (var i = t; i < d; i += 256u) { s += W[i] * DY[o + i] * X[o + i]; }
    let dot = reduce_sum(t, s);
    let r = RS[row];
    let c = r * r * r * dot / f32(d);
    for (var i = t; i < d; i += 256u) { Y[o + i] = r * W[i] * DY[o + i] - c * X[o + i]; }
}

// dw += sum over rows of dy * x * r: one thread per column, rows in order.
@compute @workgroup_size(256)
fn backward_dw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = lin(gid, nwg);
    let rows = P[0];
    let d = P[1];
    if (c >= d) { return; }
    var s = DW[c];
    for (var r = 0u; r < rows; r++) { s += DY[r * d + c] * X[r * d + c] * RS[r]; }
    DW[c] = s;
}
