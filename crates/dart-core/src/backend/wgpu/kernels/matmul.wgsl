// C[m,n] (+)= op(A) op(B), row-major; A stored [m,k] or [k,m] (ta), B stored
// [k,n] or [n,k] (tb). P: m, n, k, ta, tb, accumulate, lda, a_off, ldc, c_off:
// A and C are sub-blocks (element offset, row stride) of larger matrices so
// that a weight split into row blocks runs block by block (lda = k or m and
// ldc = n with zero offsets for whole matrices); B is always whole.
// 64x64 output tile per 16x16 workgroup, K-step 16, both operand tiles in
// workgroup memory, 4x4 outputs per thread in registers (rows ty+16r,
// columns tx+16c so neighbouring threads hit neighbouring addresses).
// Edges are zero-padded on load and masked on store: any shape works.
@group(0) @binding(1) var<storage, read_write> C: array<f32>;
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [BK][BM]
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let m = P[0];
    let n = P[1];
    let k = P[2];
    let ta = P[3];
    let tb = P[4];
    let lda = P[6];
    let a_off = P[7];
    let ldc = P[8];
    let c_off = P[9];
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < k; k0 += BK) {
        for (var t = 0u; t < 4u; t++) {
            let e = li + t * 256u;
            // A tile element (i, p); pick the mapping that walks memory contiguously.
            var i: u32;
            var p: u32;
            if (ta == 0u) { p = e % BK; i = e / BK; } else { i = e % BM; p = e / BM; }
            let gi = row0 + i;
            let gp = k0 + p;
            var v = 0.0;
            if (gi < m && gp < k) {
                if (ta == 0u) { v = A[a_off + gi * lda + gp]; } else { v = A[a_off + gp * lda + gi]; }
            }
            As[p * BM + i] = v;
            // B tile element (p, j).
            var j: u32;
            if (tb == 0u) { j = e % BN; p = e / BN; } else { p = e % BK; j = e / BK; }
            let gj = col0 + j;
            let gq = k0 + p;
            var w = 0.0;
            if (gj < n && gq < k) {
                if (tb == 0u) { w = B[gq * n + gj]; } else { w = B[gj * k + gq]; }
            }
            Bs[p * BN + j] = w;
        }
        workgroupBarrier();
        for (var p = 0u; p < BK; p++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var r = 0u; r < 4u; r++) {
                a[r] = As[p * BM + lid.y + 16u * r];
                b[r] = Bs[p * BN + lid.x + 16u * r];
            }
            for (var r = 0u; r < 4u; r++) {
                for (var c = 0u; c < 4u; c++) {
                    acc[r * 4u + c] = fma(a[r], b[c], acc[r * 4u + c]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let gi = row0 + lid.y + 16u * r;
        for (var c = 0u; c < 4u; c++) {
            let gj = col0 + lid.x + 16u * c;
            if (gi < m && gj < n) {
                var v = acc[r * 4u + c];
                let ci = c_off + gi * ldc + gj;
                if (P[5] != 0u) { v += C[ci]; }
                C[ci] = v;
            }
        }
    }
}
