// Row gather/scatter for the routed LoRA (rows are sorted and distinct, so a
// scatter never races) and the bias of a dense layer.
// gather P: n, width. scatter_add P: n, width, scale. bias_add P: rows, width.
// bias_grad P: rows, width.
@group(0) @binding(1) var<storage, read_write> DST: array<f32>;
@group(0) @binding(2) var<storage, read> SRC: array<f32>;
@group(0) @binding(3) var<storage, read> ROWS: array<u32>;

@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    let w = P[1];
    if (e >= P[0] * w) { return; }
    DST[e] = SRC[ROWS[e / w] * w + e % w];
}

@compute @workgroup_size(256)
fn scatter_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    let w = P[1];
    if (e >= P[0] * w) { return; }
    let i = ROWS[e / w] * w + e % w;
    DST[i] = DST[i] + pf(2u) * SRC[e];
}

@compute @workgroup_size(256)
fn bias_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    let w = P[1];
    if (e >= P[0] * w) { return; }
    DST[e] = DST[e] + SRC[e % w];
}

// db += column sums of dy, one thread per column, rows in order.
@compute @workgroup_size(256)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = lin(gid, nwg);
    let w = P[1];
    if (c >= w) { return; }
    var s = DST[c];
    for (var r = 0u; r < P[0]; r++) { s += SRC[r * w + c]; }
    DST[c] = s;
}

// x *= scale. P: n, scale.
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    if (e >= P[0]) { return; }
    DST[e] = DST[e] * pf(1u);
}

// DST += SRC elementwise. P: n.
@compute @workgroup_size(256)
fn add_assign(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = lin(gid, nwg);
    if (e >= P[0]) { return; }
    DST[e] = DST[e] + SRC[e];
}
