use gemm::{gemm, Parallelism};
use std::time::Instant;
fn run(m: usize, k: usize, n: usize, w_row_major_kn: bool, par: Parallelism, iters: usize) -> f64 {
    let x = taskbench_kernels::test_values(m * k, 1, 1.0);
    let w = taskbench_kernels::test_values(k * n, 2, 1.0);
    let mut out = vec![0.0f32; m * n];
    let t = Instant::now();
    for _ in 0..iters {
        unsafe {
            if w_row_major_kn {
                gemm(m, n, k, out.as_mut_ptr(), 1, n as isize, false, x.as_ptr(), 1, k as isize, w.as_ptr(), 1, n as isize, 0.0, 1.0, false, false, false, par);
            } else {
                // w stored [n, k] row-major: rhs[i][j] = w[j*k + i] -> rhs_cs = k, rhs_rs = 1
                gemm(m, n, k, out.as_mut_ptr(), 1, n as isize, false, x.as_ptr(), 1, k as isize, w.as_ptr(), k as isize, 1, 0.0, 1.0, false, false, false, par);
            }
        }
    }
    let s = t.elapsed().as_secs_f64() / iters as f64;
    2.0 * (m * k * n) as f64 / s / 1e9
}
fn main() {
    if std::env::var("MODEL").is_ok() { model_like(); return; }
    for (m, k, n) in [(16, 384, 1152), (16, 384, 1536), (16, 1536, 384), (2048, 384, 1152), (2048, 1536, 384)] {
        let iters = if m < 100 { 2000 } else { 20 };
        for kn in [true, false] {
            for (name, par) in [("1t", Parallelism::None), ("2t", Parallelism::Rayon(2))] {
                println!("m{m} k{k} n{n} {} {name}: {:.1} GFLOP/s", if kn { "w[k,n]" } else { "w[n,k]" }, run(m, k, n, kn, par, iters));
            }
        }
    }
}
#[allow(dead_code)]
pub fn model_like() {
    // 6 layers x (qkv, out, ffn_in, ffn_out) with distinct weights, m tokens.
    for m in [16usize, 64, 2048] {
        let shapes = [(384usize, 1152usize), (384, 384), (384, 1536), (1536, 384)];
        let ws: Vec<Vec<f32>> = (0..24).map(|i| taskbench_kernels::test_values(shapes[i % 4].0 * shapes[i % 4].1, i as u64, 0.1)).collect();
        let x = taskbench_kernels::test_values(m * 1536, 99, 1.0);
        let mut out = vec![0.0f32; m * 1536];
        let bias = vec![0.0f32; 1536];
        let iters = if m < 100 { 200 } else { 5 };
        for threads in [1usize, 2] {
            let t = Instant::now();
            for _ in 0..iters {
                for (i, w) in ws.iter().enumerate() {
                    let (k, n) = shapes[i % 4];
                    taskbench_kernels::linear::linear_bias(&x[..m * k], m, w, k, n, &bias[..n], threads, &mut out[..m * n]);
                }
            }
            let s = t.elapsed().as_secs_f64() / iters as f64;
            println!("model-like m{m} {threads}t: {:.2} ms, {:.1} GFLOP/s", s * 1e3, 2.0 * m as f64 * 10.6e6 / s / 1e9);
        }
    }
}
