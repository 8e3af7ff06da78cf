//! GEMM GFLOPS on the wgpu backend (tiled WGSL kernel), next to the cpu GEMM
//! on the same shapes, with a correctness check against the cpu result.
//! Usage: cargo run -p dart-bench --release --bin wgpu -- [size ...]
//! DART_WGPU_ADAPTER pins the adapter (e.g. llvmpipe). On lavapipe the
//! numbers measure a CPU rasterizer, not a GPU: for the record only.
use dart_core::backend::wgpu::{GpuContext, GpuOps, GEMM_TILE};
use dart_core::ops::matmul::matmul;
use std::time::Instant;

fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![256, 512, 1024] } else { sizes };
    let ctx = match GpuContext::new(None, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!("adapter: {} ({}, {}) driver {}", ctx.adapter.name, ctx.adapter.device_type, ctx.adapter.backend, ctx.adapter.driver);
    println!("kernel: {GEMM_TILE}x{GEMM_TILE} tile / 16x16 workgroup / 4x4 per thread / k-step 16");
    let ops = GpuOps::new(ctx);
    let mut rows = Vec::new();
    for &n in &sizes {
        let (m, k) = (n, n);
        let (a, b) = (rand(m * k, 1), rand(k * n, 2));
        let flop = 2.0 * (m * n * k) as f64;
        // cpu
        let mut c_cpu = vec![0.0f32; m * n];
        matmul(&mut c_cpu, &a, &b, m, n, k, false, false, false);
        let t = Instant::now();
        let mut it = 0;
        while it < 3 || t.elapsed().as_secs_f64() < 0.5 {
            matmul(&mut c_cpu, &a, &b, m, n, k, false, false, false);
            it += 1;
        }
        let cpu = flop * it as f64 / t.elapsed().as_secs_f64() / 1e9;
        // wgpu: warm up (pipeline compile), then a batch of dispatches, one wait
        let (ga, gb, gc) = (ops.ctx.upload(&a), ops.ctx.upload(&b), ops.ctx.alloc(m * n));
        ops.matmul(&gc, &ga, &gb, m, n, k, false, false, false);
        let got = ops.ctx.download(&gc);
        let err = got.iter().zip(&c_cpu).map(|(x, y)| ((x - y).abs() / y.abs().max(1.0)) as f64).fold(0.0, f64::max);
        let mut iters = 1;
        let gpu = loop {
            let t = Instant::now();
            for _ in 0..iters {
                ops.matmul(&gc, &ga, &gb, m, n, k, false, false, false);
            }
            let _ = ops.ctx.download(&gc);
            let s = t.elapsed().as_secs_f64();
            if s > 0.5 || iters >= 256 {
                break flop * iters as f64 / s / 1e9;
            }
            iters *= 2;
        };
        println!("gemm {m}x{n}x{k}: wgpu {gpu:.1} GFLOPS, cpu {cpu:.1} GFLOPS, max scaled diff {err:.1e}");
        rows.push(format!("{{\"m\":{m},\"n\":{n},\"k\":{k},\"wgpu_gflops\":{gpu:.2},\"cpu_gflops\":{cpu:.2},\"max_diff\":{err:e}}}"));
    }
    println!("[{}]", rows.join(","));
}
