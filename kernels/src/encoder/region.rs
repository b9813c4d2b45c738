//! The blocks for a batch of few tokens (a single-stream query) in one parallel region of the
//! [`team`] ([`team::run_steps`]): the threads are woken once per forward pass; each of a
//! block's seven steps (four products, attention, two residual LayerNorms) is cut into
//! chunks (output columns, heads, rows) that whichever thread is free takes, and the next
//! step starts when all of them are done.
//!
//! Why: at 16 tokens one product takes 10-60 microseconds, and the per-product rayon
//! fork-join of [`layer_forward`](super::layer_forward) put the caller to sleep and woke the
//! pool four times per block, a fifth of a query's time in futex calls and wake-ups. Chunks
//! rather than fixed shares because a busy machine may not run a helper promptly: then the
//! caller takes its chunks instead of waiting. Larger batches keep the per-product path:
//! there a product takes milliseconds and gemm splits it better.
//!
//! int8 outputs are computed by the same kernel as on the per-product path (so, exactly);
//! fp32 products of up to [`packed::MAX_ROWS`] rows use the packed kernel, which sums in
//! another order than gemm (within 1e-5 of the per-product path in the tests). The chunks
//! are fixed by the batch and the thread count asked for, not by which threads turn up, so a
//! run is repeatable.

use std::ops::Range;

use super::{Activation, Int8LayerWeights, LayerWeights, PackedProducts, Shape, Workspace};
use crate::int8::{self, Int8Linear, QuantizedRows, SharedRows, PANEL};
use crate::packed::{self, PackedLinear};
use crate::team::{self, Ctx, SharedMut, Steps};
use crate::{attention, layernorm, linear};

/// Batches of at most this many tokens run in one region (see the module docs).
pub const REGION_MAX_TOKENS: usize = 256;

/// Steps per block: QKV, attention, output projection, LayerNorm, feed-forward in and out,
/// LayerNorm.
const STEPS_PER_BLOCK: usize = 7;

/// Chunks a product's output columns (or a LayerNorm's rows) are cut into: a few per thread,
/// so a thread that starts late still finds work and a fast one is not left idle long.
const CHUNKS_PER_THREAD: usize = 2;

/// From this many tokens an int8 product's input is quantized in a step of its own, rows
/// split between the threads; below, every thread quantizes all of it for itself, which
/// costs less than the extra step. Measured on MiniLM int8, 2 threads: at 64 tokens each
/// thread spent an eighth of the pass quantizing every input in full (2.96 -> 2.75 ms per
/// pass with the step); at 16 tokens the step neither gains nor loses.
const SHARED_QUANTIZE_MIN_TOKENS: usize = 32;

/// A stack of blocks in one precision.
#[derive(Clone, Copy)]
pub enum Blocks<'a> {
    Fp32(&'a [LayerWeights]),
    Int8(&'a [Int8LayerWeights]),
}

/// Runs every block of `blocks` in place on `x` (`tokens x hidden`, sequences packed end to
/// end) on up to `threads` threads.
pub fn forward_in_region(
    x: &mut [f32],
    seq_lens: &[usize],
    blocks: Blocks,
    shape: &Shape,
    ws: &mut Workspace,
    threads: usize,
) {
    let h = shape.hidden;
    let tokens = x.len() / h;
    let bufs = Buffers {
        x: SharedMut::new(x),
        qkv: SharedMut::new(super::grow(&mut ws.qkv, tokens * 3 * h)),
        context: SharedMut::new(super::grow(&mut ws.context, tokens * h)),
        projected: SharedMut::new(super::grow(&mut ws.projected, tokens * h)),
        ffn: SharedMut::new(super::grow(&mut ws.ffn, tokens * shape.intermediate)),
    };
    let layers = match blocks {
        Blocks::Fp32(layers) => layers.len(),
        Blocks::Int8(layers) => layers.len(),
    };
    let shared = match blocks {
        Blocks::Int8(_) if tokens >= SHARED_QUANTIZE_MIN_TOKENS && threads > 1 => {
            Some(SharedInputs {
                hidden: ws.quantized.share(tokens, h),
                wide: ws.quantized_wide.share(tokens, shape.intermediate),
                hidden_read: &ws.quantized,
                wide_read: &ws.quantized_wide,
            })
        }
        _ => None,
    };
    // A shared quantization is one more step before each of a block's four products.
    let per_block = STEPS_PER_BLOCK + if shared.is_some() { 4 } else { 0 };
    let steps = Steps::new(layers * per_block);
    team::run_steps(threads, &|ctx: &Ctx| {
        let mut step = Step {
            ctx,
            steps: &steps,
            next: 0,
            chunks: threads * CHUNKS_PER_THREAD,
            bufs,
            seq_lens,
            shape,
            tokens,
            quantized: QuantizedRows::default(),
            shared,
        };
        match blocks {
            Blocks::Fp32(layers) => layers.iter().for_each(|w| step.block(w)),
            Blocks::Int8(layers) => layers.iter().for_each(|w| step.block(w)),
        }
    });
}

/// The region's shared buffers.
#[derive(Clone, Copy)]
struct Buffers {
    x: SharedMut,
    qkv: SharedMut,
    context: SharedMut,
    projected: SharedMut,
    ffn: SharedMut,
}

/// Where a region's threads quantize an int8 product's input together: rows of `tokens ×
/// hidden` inputs into `hidden`, of the feed-forward output into `wide`, read back through
/// the `_read` pointers once the step is over.
#[derive(Clone, Copy)]
struct SharedInputs {
    hidden: SharedRows,
    wide: SharedRows,
    hidden_read: *const QuantizedRows,
    wide_read: *const QuantizedRows,
}

// SAFETY: the rows are written in a quantize step (disjoint rows per chunk) and read only in
// the product step after it; the values pointed to outlive the region and are not moved.
unsafe impl Send for SharedInputs {}
unsafe impl Sync for SharedInputs {}

/// The four products of a block.
#[derive(Clone, Copy)]
pub(super) enum Product {
    Qkv,
    Out,
    FfnIn,
    FfnOut,
}

/// A block's weights as the region uses them: its products computed for a share of the
/// output columns, and its two LayerNorms.
pub(super) trait Block {
    /// Output columns of `product`.
    fn width(&self, product: Product) -> usize;

    /// The unit in which output columns are shared between threads.
    fn column_unit(&self) -> usize;

    /// What a thread does once per product before its first chunk (int8: quantize the
    /// input rows, each thread for itself: a few microseconds at these sizes, cheaper than
    /// another step).
    fn prepare(&self, _product: Product, _input: &[f32], _quantized: &mut QuantizedRows) {}

    /// Whether products read a quantized input (int8), which the region may quantize in a
    /// step of its own instead of in [`Block::prepare`].
    fn quantizes_input(&self) -> bool {
        false
    }

    /// `out[:, cols] = act(input · w[:, cols] + b[cols])`, `cols` a multiple of
    /// [`Block::column_unit`] (or ending at the width), after [`Block::prepare`].
    ///
    /// # Safety
    /// `out` is the product's `rows x width` output, whose columns `cols` no other thread
    /// touches meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn product(
        &self,
        product: Product,
        input: &[f32],
        rows: usize,
        cols: Range<usize>,
        act: Option<Activation>,
        quantized: &QuantizedRows,
        out: *mut f32,
    );

    /// `out = act(input · w + b)` for all columns, parallel on its own over `threads` (the
    /// path for batches too large for one region).
    #[allow(clippy::too_many_arguments)]
    fn whole_product(
        &self,
        product: Product,
        input: &[f32],
        rows: usize,
        act: Option<Activation>,
        threads: usize,
        quantized: &mut QuantizedRows,
        out: &mut [f32],
    );

    fn attn_norm(&self) -> &(Vec<f32>, Vec<f32>);
    fn ffn_norm(&self) -> &(Vec<f32>, Vec<f32>);
}

/// One thread's view of the region.
struct Step<'a> {
    ctx: &'a Ctx<'a>,
    steps: &'a Steps,
    /// The step this thread reaches next.
    next: usize,
    /// Chunks per product or LayerNorm.
    chunks: usize,
    bufs: Buffers,
    seq_lens: &'a [usize],
    shape: &'a Shape,
    tokens: usize,
    /// This thread's quantized copy of a product's input (int8 only).
    quantized: QuantizedRows,
    /// The inputs all threads quantize together (int8 batches of enough tokens).
    shared: Option<SharedInputs>,
}

impl Step<'_> {
    /// One block: seven steps.
    fn block(&mut self, w: &impl Block) {
        let (b, s) = (self.bufs, self.shape);
        let d = s.hidden / s.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let pairs = self.seq_lens.len() * s.heads;
        // SAFETY (all steps): a step reads only buffers completed by earlier steps, and each
        // chunk writes its own part (columns, a sequence's head, rows) of one buffer that no
        // chunk of the same step reads.
        unsafe {
            self.product(w, Product::Qkv, b.x, None, b.qkv);
            let qkv = b.qkv.all();
            self.run(pairs, |pair| {
                let out = b.context.ptr();
                attention::attend_pairs(qkv, self.seq_lens, s.heads, d, scale, pair..pair + 1, out);
            });
            self.product(w, Product::Out, b.context, None, b.projected);
            self.add_norm_rows(w.attn_norm());
            self.product(w, Product::FfnIn, b.x, Some(s.activation), b.ffn);
            self.product(w, Product::FfnOut, b.ffn, None, b.projected);
            self.add_norm_rows(w.ffn_norm());
        }
    }

    /// The next step, cut into `chunks` chunks.
    fn run(&mut self, chunks: usize, f: impl FnMut(usize)) {
        self.ctx.step(self.steps, self.next, chunks, f);
        self.next += 1;
    }

    /// One product of the whole input, its output columns in chunks.
    ///
    /// # Safety
    /// `input` is complete and not written during the step; `out` is not read during it.
    unsafe fn product(
        &mut self,
        w: &impl Block,
        product: Product,
        input: SharedMut,
        act: Option<Activation>,
        out: SharedMut,
    ) {
        let (width, unit, chunks) = (w.width(product), w.column_unit(), self.chunks);
        let rows = self.tokens;
        if let (true, Some(shared)) = (w.quantizes_input(), self.shared) {
            let (target, read) = match product {
                Product::FfnOut => (shared.wide, shared.wide_read),
                _ => (shared.hidden, shared.hidden_read),
            };
            let parts = chunks.min(rows);
            self.run(parts, |c| {
                target.quantize(input.all(), team::split(rows, 1, c, parts))
            });
            let quantized = &*read;
            self.run(chunks, |c| {
                let cols = team::split(width, unit, c, chunks);
                w.product(product, input.all(), rows, cols, act, quantized, out.ptr());
            });
            return;
        }
        let mut quantized = std::mem::take(&mut self.quantized);
        let mut ready = false;
        self.run(chunks, |c| {
            if !ready {
                w.prepare(product, input.all(), &mut quantized);
                ready = true;
            }
            let cols = team::split(width, unit, c, chunks);
            w.product(product, input.all(), rows, cols, act, &quantized, out.ptr());
        });
        self.quantized = quantized;
    }

    /// `x = LayerNorm(x + projected)`, rows in chunks.
    ///
    /// # Safety
    /// `projected` is complete; nothing else reads or writes `x` during the step.
    unsafe fn add_norm_rows(&mut self, norm: &(Vec<f32>, Vec<f32>)) {
        let (h, eps, tokens, chunks) =
            (self.shape.hidden, self.shape.eps, self.tokens, self.chunks);
        let (x, projected) = (self.bufs.x, self.bufs.projected);
        self.run(chunks.min(tokens), |c| {
            let rows = team::split(tokens, 1, c, chunks.min(tokens));
            let span = rows.start * h..rows.end * h;
            let delta = &projected.all()[span.clone()];
            layernorm::add_layer_norm_inplace(x.part(span), delta, &norm.0, &norm.1, eps);
        });
    }
}

impl LayerWeights {
    fn matrix(&self, product: Product) -> (&[f32], &[f32]) {
        match product {
            Product::Qkv => (&self.qkv_w, &self.qkv_b),
            Product::Out => (&self.out_w, &self.out_b),
            Product::FfnIn => (&self.ffn_in_w, &self.ffn_in_b),
            Product::FfnOut => (&self.ffn_out_w, &self.ffn_out_b),
        }
    }
}

impl PackedProducts {
    fn matrix(&self, product: Product) -> &PackedLinear {
        match product {
            Product::Qkv => &self.qkv,
            Product::Out => &self.out,
            Product::FfnIn => &self.ffn_in,
            Product::FfnOut => &self.ffn_out,
        }
    }
}

impl Block for LayerWeights {
    fn width(&self, product: Product) -> usize {
        self.matrix(product).1.len()
    }

    /// The packed kernel's panel width; gemm takes any multiple of 16 as well.
    fn column_unit(&self) -> usize {
        packed::PANEL
    }

    unsafe fn product(
        &self,
        product: Product,
        input: &[f32],
        rows: usize,
        cols: Range<usize>,
        act: Option<Activation>,
        _quantized: &QuantizedRows,
        out: *mut f32,
    ) {
        let (w, b) = self.matrix(product);
        let (k, n) = (input.len() / rows.max(1), b.len());
        match &self.packed {
            Some(p) if rows <= packed::MAX_ROWS => {
                let panels = cols.start / packed::PANEL..cols.end.div_ceil(packed::PANEL);
                packed::linear_panels(input, rows, p.matrix(product), panels, out);
            }
            _ => linear::linear_bias_cols(input, rows, w, k, n, b, cols.clone(), out),
        }
        let Some(act) = act else { return };
        for r in 0..rows {
            let row = std::slice::from_raw_parts_mut(out.add(r * n + cols.start), cols.len());
            act.apply(row);
        }
    }

    fn whole_product(
        &self,
        product: Product,
        input: &[f32],
        rows: usize,
        act: Option<Activation>,
        threads: usize,
        _quantized: &mut QuantizedRows,
        out: &mut [f32],
    ) {
        let (w, b) = self.matrix(product);
        let (k, n) = (input.len() / rows.max(1), b.len());
        linear::linear_bias(input, rows, w, k, n, b, threads, out);
        if let Some(act) = act {
            act.apply(out);
        }
    }

    fn attn_norm(&self) -> &(Vec<f32>, Vec<f32>) {
        &self.attn_norm
    }

    fn ffn_norm(&self) -> &(Vec<f32>, Vec<f32>) {
        &self.ffn_norm
    }
}

impl Int8LayerWeights {
    fn matrix(&self, product: Product) -> &Int8Linear {
        match product {
            Product::Qkv => &self.qkv,
            Product::Out => &self.out,
            Product::FfnIn => &self.ffn_in,
            Product::FfnOut => &self.ffn_out,
        }
    }
}

impl Block for Int8LayerWeights {
    fn width(&self, product: Product) -> usize {
        self.matrix(product).n()
    }

    fn column_unit(&self) -> usize {
        PANEL
    }

    /// Every thread quantizes the whole input for itself: a few microseconds at these
    /// sizes, cheaper than another step.
    fn prepare(&self, product: Product, input: &[f32], quantized: &mut QuantizedRows) {
        quantized.quantize(input, self.matrix(product).k(), 1);
    }

    fn quantizes_input(&self) -> bool {
        true
    }

    unsafe fn product(
        &self,
        product: Product,
        _input: &[f32],
        _rows: usize,
        cols: Range<usize>,
        act: Option<Activation>,
        quantized: &QuantizedRows,
        out: *mut f32,
    ) {
        let w = self.matrix(product);
        let panels = cols.start / PANEL..cols.end.div_ceil(PANEL);
        int8::linear_panels(quantized, w, act, panels, out);
    }

    /// The activation runs in the product's epilogue, on each tile while it is in cache.
    fn whole_product(
        &self,
        product: Product,
        input: &[f32],
        _rows: usize,
        act: Option<Activation>,
        threads: usize,
        quantized: &mut QuantizedRows,
        out: &mut [f32],
    ) {
        int8::linear_f32(input, self.matrix(product), act, threads, quantized, out);
    }

    fn attn_norm(&self) -> &(Vec<f32>, Vec<f32>) {
        &self.attn_norm
    }

    fn ffn_norm(&self) -> &(Vec<f32>, Vec<f32>) {
        &self.ffn_norm
    }
}
