// SwiGLU a = silu(g) * u. P: n.
@group(0) @binding(1) var<storage, read_write> O1: array<f32>; // a (fwd) / dg (bwd)
@group(0) @binding(2) var<storage, read_write> O2: array<f32>; // du (bwd)
@group(0) @binding(3) var<storage, read> G: array<f32>;
@group(0) @binding(4) var<storage, read> U: array<f32>;
@group(0) @binding(5) var<storage, read> DA: array<f32>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = lin(gid, nwg);
    if (i >= P[0]) { return; }
    let g = G[i];
    O1[i] = g * sigmoid(g) * U[i];
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = lin(gid, nwg);
    if (i >= P[0]) { return; }
    let g = G[i];
    let s = sigmoid(g);
    let da = DA[i];
    O2[i] = da * g * s;
    O1[i] = da * U[i] * s * (1.0 + g * (1.0 - s));
}
