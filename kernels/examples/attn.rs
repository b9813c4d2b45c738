use std::time::Instant;
fn main() {
    let lens = vec![64usize; 32];
    let (heads, d) = (12, 32);
    let tokens: usize = lens.iter().sum();
    let qkv = taskbench_kernels::test_values(tokens * 3 * heads * d, 1, 1.0);
    let mut out = vec![0.0f32; tokens * heads * d];
    for _ in 0..3 { taskbench_kernels::attention::packed_attention(&qkv, &lens, heads, d, 0.17, &mut out); }
    let n = 50;
    let t = Instant::now();
    for _ in 0..n { taskbench_kernels::attention::packed_attention(&qkv, &lens, heads, d, 0.17, &mut out); }
    let ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    let flops = 4.0 * (64.0 * 64.0 * 32.0) * 12.0 * 32.0;
    println!("attention b32 s64: {ms:.3} ms per layer ({:.1} GFLOP/s), x6 layers = {:.1} ms", flops / ms / 1e6, ms * 6.0);
}
