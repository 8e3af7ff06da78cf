//! Device setup for the wgpu backend: backend selection (cpu | wgpu | auto),
//! adapter choice (pinned by `DART_WGPU_ADAPTER`), the device with the
//! adapter's real limits, a size-class buffer pool, pipelines compiled once,
//! and a command encoder that batches every dispatch until a read-back.
//!
//! Once warm, a training step or a decode step creates no device buffer:
//! activations and scratch come from the pool, index tensors are rewritten
//! in place (grow-only), the dispatches' parameter blocks live in one buffer
//! written once per submitted batch, and read-backs reuse pooled staging
//! buffers. `GpuContext::buffers_created` counts every buffer created.
use crate::error::{DartError, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Environment variable that pins the adapter: a case-insensitive substring
/// of the adapter name (e.g. `llvmpipe`, `nvidia`, `radeon`).
pub const ADAPTER_ENV: &str = "DART_WGPU_ADAPTER";

const LAVAPIPE_HINT: &str = "for a CPU Vulkan device install Mesa lavapipe \
     (Debian/Ubuntu: apt-get install -y mesa-vulkan-drivers libvulkan1) and pin it with DART_WGPU_ADAPTER=llvmpipe";

pub use crate::backend::BackendKind;

/// Name, type and API of an adapter, as listed in errors and reports.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub device_type: String,
    pub backend: String,
    pub driver: String,
    /// A real GPU (discrete, integrated or virtual), not a CPU rasterizer.
    pub is_gpu: bool,
}

fn summary(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        device_type: format!("{:?}", info.device_type),
        backend: format!("{:?}", info.backend),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        is_gpu: matches!(
            info.device_type,
            wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::VirtualGpu
        ),
    }
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    wgpu::Instance::new(desc)
}

fn adapters(inst: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::PRIMARY))
}

/// Every adapter wgpu can see on this machine.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters(&instance()).iter().map(|a| summary(&a.get_info())).collect()
}

fn describe(list: &[AdapterSummary]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter().map(|a| format!("{:?} ({}, {})", a.name, a.device_type, a.backend)).collect::<Vec<_>>().join(", ")
}

fn rank(info: &wgpu::AdapterInfo) -> u8 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// The pin in effect: the explicit argument, else `DART_WGPU_ADAPTER`.
fn pin_of(pin: Option<&str>) -> Option<String> {
    pin.map(str::to_string).or_else(|| std::env::var(ADAPTER_ENV).ok()).filter(|s| !s.trim().is_empty())
}

/// Resolves a backend request. `Ok(None)` means cpu. `Wgpu` with no usable
/// adapter is an error naming the adapters found and how to get lavapipe.
pub fn select_backend(kind: BackendKind, pin: Option<&str>) -> Result<Option<GpuContext>> {
    match kind {
        BackendKind::Cpu => Ok(None),
        BackendKind::Wgpu => GpuContext::new(pin, false).map(Some),
        BackendKind::Auto => match GpuContext::new(pin, true) {
            Ok(c) => Ok(Some(c)),
            Err(_) => Ok(None),
        },
    }
}

/// A device tensor of 4-byte elements (f32, or i32/u32 for indices). Pooled
/// buffers go back to the pool when dropped.
///
/// A tensor larger than the context's split size (the binding limit, see
/// `GpuContext::split_bytes`) is stored split by rows: `parts` holds
/// consecutive blocks of whole rows of `width` elements, each its own buffer
/// (every block but the last has the same number of rows). Only the ops that
/// take such tensors (the GEMMs, embedding, elementwise and memory ops) accept
/// a split tensor; a tensor that fits is one buffer as before.
pub struct GpuTensor {
    buf: Option<wgpu::Buffer>,
    len: usize,
    pool: Option<Arc<Mutex<Pool>>>,
    parts: Vec<GpuTensor>,
    width: usize,
}

impl GpuTensor {
    /// Number of 4-byte elements.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The one buffer of an unsplit tensor.
    pub fn buffer(&self) -> &wgpu::Buffer {
        match &self.buf {
            Some(b) => b,
            None if !self.parts.is_empty() => panic!(
                "GpuTensor({}) is split into {} row blocks (over the binding limit) and this op takes one buffer",
                self.len,
                self.parts.len()
            ),
            None => panic!("dropped tensor"),
        }
    }
    fn bytes(&self) -> u64 {
        (self.len * 4) as u64
    }
    /// Elements the buffer of an unsplit tensor can hold (0 when split).
    fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| (b.size() / 4) as usize)
    }
    /// Whether the tensor is stored as several row blocks.
    pub fn is_split(&self) -> bool {
        !self.parts.is_empty()
    }
    /// Number of device buffers (1 unless split).
    pub fn num_parts(&self) -> usize {
        self.parts.len().max(1)
    }
    /// Row width of the blocks of a split tensor (0 when not split).
    pub fn width(&self) -> usize {
        self.width
    }
    /// (element offset, buffer tensor) of each block: the tensor itself when
    /// not split.
    pub fn blocks(&self) -> Vec<(usize, &GpuTensor)> {
        if self.parts.is_empty() {
            return vec![(0, self)];
        }
        let mut off = 0;
        self.parts
            .iter()
            .map(|p| {
                let o = off;
                off += p.len;
                (o, p)
            })
            .collect()
    }
    /// (first row, rows, block) of each row block of a split tensor of rows of `width`.
    pub fn row_blocks(&self, width: usize) -> Vec<(usize, usize, &GpuTensor)> {
        if self.is_split() {
            assert_eq!(self.width, width, "split tensor of rows of {} used with rows of {width}", self.width);
        }
        self.blocks().into_iter().map(|(o, p)| (o / width.max(1), p.len / width.max(1), p)).collect()
    }
    /// Whether `self` and `other` have the same length and block layout.
    pub fn same_layout(&self, other: &GpuTensor) -> bool {
        self.len == other.len
            && self.parts.len() == other.parts.len()
            && self.parts.iter().zip(&other.parts).all(|(a, b)| a.len == b.len)
    }
}

impl Drop for GpuTensor {
    fn drop(&mut self) {
        if let (Some(pool), Some(buf)) = (&self.pool, self.buf.take()) {
            if let Ok(mut p) = pool.lock() {
                p.put(buf);
            }
        }
    }
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor({})", self.len)
    }
}

/// Free buffers by size class (powers of two, at least 256 bytes).
#[derive(Default)]
pub struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pub allocated: usize,
    pub reused: usize,
}

impl Pool {
    /// The buffer size of a request: the power of two at or above it while
    /// that stays within `limit` (the device's binding limit), else the size
    /// itself (a power of two could exceed the limit, e.g. a 2.5 GiB tensor
    /// under a 4 GiB - 1 limit).
    fn class(bytes: u64, limit: u64) -> u64 {
        let p = bytes.max(256).next_power_of_two();
        if p <= limit {
            p
        } else {
            bytes.next_multiple_of(4)
        }
    }
    fn put(&mut self, buf: wgpu::Buffer) {
        self.free.entry(buf.size()).or_default().push(buf);
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Submit the batched commands after this many (bounds the parameter
/// blocks of a batch, see `PARAM_WORDS`).
const MAX_BATCH: usize = 512;

/// Parameter words a dispatch may pass (its block at binding 0).
const PARAM_WORDS: usize = 16;

/// The commands recorded since the last submit, and the parameter blocks of
/// their dispatches (host copy; written into `GpuContext::params` right
/// before the submit, so every dispatch of the batch reads its own block).
#[derive(Default)]
struct Batch {
    enc: Option<wgpu::CommandEncoder>,
    commands: usize,
    /// Dispatches recorded (= parameter blocks used).
    dispatches: usize,
    params: Vec<u8>,
}

/// A compiled entry point and its bind group layout.
type Pipeline = (wgpu::ComputePipeline, wgpu::BindGroupLayout);

/// A wgpu device ready for the engine's kernels.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    /// The largest buffer a kernel can bind: min(max_storage_buffer_binding_size,
    /// max_buffer_size) of the device (the adapter's real limits).
    pub binding_limit: u64,
    /// Tensors created with a row width (weights, their gradients and
    /// moments) beyond this many bytes are split into row blocks of at most
    /// this size: `binding_limit`, or less under `DART_WGPU_MAX_BINDING_BYTES`
    /// / `with_max_binding_bytes` (tests force small blocks this way). The
    /// model computes the logits in blocks of token rows within it too
    /// (`Backend::max_rows_per_block`).
    pub split_bytes: u64,
    pool: Arc<Mutex<Pool>>,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Pipeline>>,
    pending: Mutex<Batch>,
    /// The parameter blocks of one batch: `MAX_BATCH` slots of `param_stride`
    /// bytes (a multiple of the storage offset alignment), bound at binding 0
    /// with the offset of the dispatch's slot and rewritten at each submit
    /// (`queue.write_buffer` lands before the submitted commands and after
    /// every earlier submission).
    params: wgpu::Buffer,
    param_stride: u64,
    /// Free MAP_READ staging buffers of read-backs, by size class.
    readback: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    /// Device buffers created so far (pool, uploads, staging, parameters).
    created: AtomicUsize,
}

/// Environment variable that lowers the size beyond which weights are split
/// into row blocks, and the logits into blocks of token rows (bytes; at most
/// the device's binding limit). For tests: a tiny value makes tiny models
/// take the split paths.
pub const MAX_BINDING_ENV: &str = "DART_WGPU_MAX_BINDING_BYTES";

thread_local! {
    static SPLIT_OVERRIDE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with contexts created on this thread splitting tensors beyond
/// `bytes` (as `DART_WGPU_MAX_BINDING_BYTES`, without touching the process
/// environment; for tests).
pub fn with_max_binding_bytes<R>(bytes: u64, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<u64>);
    impl Drop for Reset {
        fn drop(&mut self) {
            SPLIT_OVERRIDE.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(SPLIT_OVERRIDE.with(|c| c.replace(Some(bytes))));
    f()
}

fn split_override() -> Option<u64> {
    SPLIT_OVERRIDE.with(|c| c.get()).or_else(|| std::env::var(MAX_BINDING_ENV).ok().and_then(|s| s.trim().parse().ok()))
}

/// Storage buffers the widest kernel (attention backward) binds at once.
const NEEDED_STORAGE_BUFFERS: u32 = 10;

impl GpuContext {
    /// Opens an adapter: the pinned one (`pin`, else `DART_WGPU_ADAPTER`) if
    /// given, else the best by type (discrete > integrated > virtual > cpu).
    /// With `gpu_only` (auto selection), an unpinned choice must be a real GPU.
    pub fn new(pin: Option<&str>, gpu_only: bool) -> Result<GpuContext> {
        let inst = instance();
        let all = adapters(&inst);
        let found: Vec<AdapterSummary> = all.iter().map(|a| summary(&a.get_info())).collect();
        let pin = pin_of(pin);
        let chosen = match &pin {
            Some(p) => {
                let p = p.to_lowercase();
                all.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&p)).ok_or_else(|| {
                    DartError::InvalidArgument(format!(
                        "backend wgpu: no adapter name contains {p:?} ({ADAPTER_ENV}); adapters found: {}; {LAVAPIPE_HINT}",
                        describe(&found)
                    ))
                })?
            }
            None => {
                let mut all = all;
                all.sort_by_key(|a| rank(&a.get_info()));
                let best = all.into_iter().next().ok_or_else(|| {
                    DartError::InvalidArgument(format!(
                        "backend wgpu requested but wgpu found no adapter (adapters found: none); {LAVAPIPE_HINT}"
                    ))
                })?;
                if gpu_only && !summary(&best.get_info()).is_gpu {
                    return Err(DartError::InvalidArgument(format!(
                        "backend auto: no GPU adapter (adapters found: {})",
                        describe(&found)
                    )));
                }
                best
            }
        };
        let info = summary(&chosen.get_info());
        let limits = chosen.limits();
        if limits.max_storage_buffers_per_shader_stage < NEEDED_STORAGE_BUFFERS + 1 {
            return Err(DartError::InvalidArgument(format!(
                "backend wgpu: adapter {:?} allows {} storage buffers per shader stage, the kernels need {}",
                info.name,
                limits.max_storage_buffers_per_shader_stage,
                NEEDED_STORAGE_BUFFERS + 1
            )));
        }
        let (device, queue) = pollster::block_on(chosen.request_device(&wgpu::DeviceDescriptor {
            label: Some("dart-core"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| DartError::Io(format!("backend wgpu: adapter {:?} refused a device: {e}", info.name)))?;
        let binding_limit = (limits.max_storage_buffer_binding_size as u64).min(limits.max_buffer_size);
        let split_bytes = split_override().map_or(binding_limit, |b| b.clamp(16, binding_limit));
        let align = (limits.min_storage_buffer_offset_alignment as u64).max(4);
        let param_stride = ((PARAM_WORDS * 4) as u64).next_multiple_of(align);
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dispatch parameters"),
            size: param_stride * MAX_BATCH as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(GpuContext {
            device,
            queue,
            adapter: info,
            limits,
            binding_limit,
            split_bytes,
            pool: Arc::new(Mutex::new(Pool::default())),
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            pending: Mutex::new(Batch::default()),
            params,
            param_stride,
            readback: Mutex::new(HashMap::new()),
            created: AtomicUsize::new(1),
        })
    }

    /// (buffers created, buffers reused) by the pool so far.
    pub fn pool_stats(&self) -> (usize, usize) {
        let p = self.pool.lock().unwrap();
        (p.allocated, p.reused)
    }

    /// Device buffers this context has created so far: pooled tensors,
    /// uploads, read-back staging buffers and the parameter buffer. Once
    /// warm, a training step (forward, backward, step) or a decode step of
    /// shapes seen before adds none.
    pub fn buffers_created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(desc)
    }

    /// An uninitialised pooled tensor of `len` elements (contents are
    /// whatever the buffer last held; kernels that write every element, or
    /// `zeros`, are the ones to use it with).
    pub fn alloc(&self, len: usize) -> GpuTensor {
        let class = Pool::class((len * 4) as u64, self.binding_limit);
        let buf = {
            let mut p = self.pool.lock().unwrap();
            match p.free.get_mut(&class).and_then(|v| v.pop()) {
                Some(b) => {
                    p.reused += 1;
                    b
                }
                None => {
                    p.allocated += 1;
                    drop(p);
                    self.create_buffer(&wgpu::BufferDescriptor {
                        label: None,
                        size: class,
                        usage: STORAGE,
                        mapped_at_creation: false,
                    })
                }
            }
        };
        GpuTensor { buf: Some(buf), len, pool: Some(self.pool.clone()), parts: Vec::new(), width: 0 }
    }

    /// Rows of `width` per block of a split tensor (and per LM head block).
    pub fn rows_per_block(&self, width: usize) -> usize {
        ((self.split_bytes / 4) as usize / width.max(1)).max(1)
    }

    /// Whether a tensor of `len` elements in rows of `width` is split.
    fn splits(&self, len: usize, width: usize) -> bool {
        width > 0 && len > width && (len * 4) as u64 > self.split_bytes
    }

    fn split_of(&self, len: usize, width: usize, mut block: impl FnMut(usize, usize) -> GpuTensor) -> GpuTensor {
        assert!(len.is_multiple_of(width), "{len} elements are not rows of {width}");
        let per = self.rows_per_block(width) * width;
        assert!(
            (per * 4) as u64 <= self.binding_limit,
            "a row of {width} f32 exceeds the binding limit of {} bytes",
            self.binding_limit
        );
        let parts: Vec<GpuTensor> = (0..len).step_by(per).map(|o| block(o, per.min(len - o))).collect();
        GpuTensor { buf: None, len, pool: None, parts, width }
    }

    /// An uninitialised tensor of `len` elements in rows of `width`: one
    /// pooled buffer when it fits in `split_bytes`, else row blocks.
    pub fn alloc_rows(&self, len: usize, width: usize) -> GpuTensor {
        if !self.splits(len, width) {
            return self.alloc(len);
        }
        self.split_of(len, width, |_, n| self.alloc(n))
    }

    /// An uninitialised tensor with the length and block layout of `t`.
    pub fn alloc_like(&self, t: &GpuTensor) -> GpuTensor {
        if t.is_split() {
            self.alloc_rows(t.len, t.width)
        } else {
            self.alloc(t.len)
        }
    }

    /// A pooled tensor of zeros.
    pub fn zeros(&self, len: usize) -> GpuTensor {
        let t = self.alloc(len);
        self.fill_zero(&t);
        t
    }

    /// Zeroes a tensor (recorded in the batch, ordered with the kernels).
    pub fn fill_zero(&self, t: &GpuTensor) {
        for (_, p) in t.blocks() {
            if p.len > 0 {
                self.with_encoder(|enc| enc.clear_buffer(p.buffer(), 0, Some(p.bytes())));
            }
        }
    }

    fn init(&self, bytes: &[u8], len: usize) -> GpuTensor {
        let mut data = bytes.to_vec();
        data.resize(data.len().max(16), 0);
        self.created.fetch_add(1, Ordering::Relaxed);
        let buf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: &data,
            usage: STORAGE,
        });
        GpuTensor { buf: Some(buf), len, pool: None, parts: Vec::new(), width: 0 }
    }

    /// Uploads f32 data into a new device tensor (no flush needed: the buffer
    /// is fresh, so no queued kernel can be reading it).
    pub fn upload(&self, x: &[f32]) -> GpuTensor {
        self.init(bytemuck::cast_slice(x), x.len())
    }
    /// Uploads f32 data in rows of `width`, split into row blocks beyond `split_bytes`.
    pub fn upload_rows(&self, x: &[f32], width: usize) -> GpuTensor {
        if !self.splits(x.len(), width) {
            return self.upload(x);
        }
        self.split_of(x.len(), width, |o, n| self.upload(&x[o..o + n]))
    }
    pub fn upload_i32(&self, x: &[i32]) -> GpuTensor {
        self.init(bytemuck::cast_slice(x), x.len())
    }
    pub fn upload_u32(&self, x: &[u32]) -> GpuTensor {
        self.init(bytemuck::cast_slice(x), x.len())
    }

    /// Makes `t` hold `len` 4-byte elements from `bytes`, reusing its buffer
    /// when it is big enough (grow-only: a pooled buffer of the size class
    /// otherwise). Flushes queued work first so the write lands after it.
    fn rewrite(&self, t: &mut GpuTensor, bytes: &[u8], len: usize) {
        if t.is_split() || t.capacity() < len.max(1) {
            *t = self.alloc(len);
        }
        t.len = len;
        if len > 0 {
            self.flush();
            self.queue.write_buffer(t.buffer(), 0, bytes);
        }
    }
    /// Overwrites an index tensor in place (its length becomes `x.len()`),
    /// creating no buffer when its capacity suffices.
    pub fn write_i32(&self, t: &mut GpuTensor, x: &[i32]) {
        self.rewrite(t, bytemuck::cast_slice(x), x.len());
    }
    pub fn write_u32(&self, t: &mut GpuTensor, x: &[u32]) {
        self.rewrite(t, bytemuck::cast_slice(x), x.len());
    }

    /// Overwrites an existing tensor from the host (flushes queued work first
    /// so the write lands after it).
    pub fn write(&self, t: &GpuTensor, x: &[f32]) {
        assert!(x.len() <= t.len, "write: {} > {}", x.len(), t.len);
        self.flush();
        for (o, p) in t.blocks() {
            if o >= x.len() {
                break;
            }
            let n = p.len.min(x.len() - o);
            self.queue.write_buffer(p.buffer(), 0, bytemuck::cast_slice(&x[o..o + n]));
        }
    }

    /// Device-to-device copy of `len` elements.
    pub fn copy(&self, dst: &GpuTensor, src: &GpuTensor, len: usize) {
        self.copy_region(dst, 0, src, 0, len);
    }

    /// Device-to-device copy of `len` elements at element offsets (split
    /// tensors: one copy per overlap of their blocks).
    pub fn copy_region(&self, dst: &GpuTensor, dst_off: usize, src: &GpuTensor, src_off: usize, len: usize) {
        assert!(dst_off + len <= dst.len && src_off + len <= src.len);
        if len == 0 {
            return;
        }
        if !dst.is_split() && !src.is_split() {
            self.with_encoder(|enc| {
                enc.copy_buffer_to_buffer(src.buffer(), (src_off * 4) as u64, dst.buffer(), (dst_off * 4) as u64, (len * 4) as u64)
            });
            return;
        }
        for (so, sp) in src.blocks() {
            // The part of this source block inside [src_off, src_off + len).
            let (lo, hi) = (so.max(src_off), (so + sp.len).min(src_off + len));
            if lo >= hi {
                continue;
            }
            for (d0, dp) in dst.blocks() {
                let (dlo, dhi) = (lo - src_off + dst_off, hi - src_off + dst_off);
                let (a, b) = (dlo.max(d0), dhi.min(d0 + dp.len));
                if a >= b {
                    continue;
                }
                let s_at = a - dst_off + src_off - so;
                self.with_encoder(|enc| {
                    enc.copy_buffer_to_buffer(sp.buffer(), (s_at * 4) as u64, dp.buffer(), ((a - d0) * 4) as u64, ((b - a) * 4) as u64)
                });
            }
        }
    }

    /// Submits the batched commands. The lock is held through the submit:
    /// otherwise another thread could take a fresh encoder, record a read of
    /// our results and submit it before our batch, reading stale memory.
    pub fn flush(&self) {
        let mut p = self.pending.lock().unwrap();
        self.submit_locked(&mut p);
    }

    /// Submits a batch (with the `pending` lock held): its parameter blocks
    /// go into the parameter buffer first (the write lands before the
    /// batch's commands and after those of every earlier submit).
    fn submit_locked(&self, p: &mut Batch) {
        if !p.params.is_empty() {
            self.queue.write_buffer(&self.params, 0, &p.params);
            p.params.clear();
        }
        p.commands = 0;
        p.dispatches = 0;
        if let Some(enc) = p.enc.take() {
            self.queue.submit([enc.finish()]);
        }
    }

    /// A MAP_READ staging buffer of at least `bytes` (pooled by size class).
    fn staging(&self, bytes: u64) -> wgpu::Buffer {
        let class = bytes.max(256).next_power_of_two().min(self.limits.max_buffer_size.max(bytes)).next_multiple_of(4);
        if let Some(b) = self.readback.lock().unwrap().get_mut(&class).and_then(|v| v.pop()) {
            return b;
        }
        self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: class,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Reads tensors back: one submit, one wait, for all of them.
    pub fn download_many(&self, ts: &[&GpuTensor]) -> Vec<Vec<f32>> {
        // One staging buffer (pooled) per device buffer (per block of a
        // split tensor), with the bytes it receives.
        let stagings: Vec<Vec<(wgpu::Buffer, u64)>> = ts
            .iter()
            .map(|t| {
                t.blocks()
                    .into_iter()
                    .filter(|(_, p)| p.len > 0)
                    .map(|(_, p)| {
                        let s = self.staging(p.bytes());
                        self.with_encoder(|enc| enc.copy_buffer_to_buffer(p.buffer(), 0, &s, 0, p.bytes()));
                        (s, p.bytes())
                    })
                    .collect()
            })
            .collect();
        self.flush();
        for (s, n) in stagings.iter().flatten() {
            s.map_async(wgpu::MapMode::Read, 0..*n, |r| r.expect("map readback buffer"));
        }
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("device poll");
        let out = stagings
            .iter()
            .zip(ts)
            .map(|(ss, t)| {
                let mut v = Vec::with_capacity(t.len);
                for (s, n) in ss {
                    {
                        let view = s.get_mapped_range(0..*n).expect("mapped range");
                        v.extend_from_slice(bytemuck::cast_slice::<u8, f32>(&view));
                    }
                    s.unmap();
                }
                v
            })
            .collect();
        let mut free = self.readback.lock().unwrap();
        for (s, _) in stagings.into_iter().flatten() {
            free.entry(s.size()).or_default().push(s);
        }
        out
    }

    pub fn download(&self, t: &GpuTensor) -> Vec<f32> {
        self.download_many(&[t]).pop().unwrap()
    }

    pub fn download_i32(&self, t: &GpuTensor) -> Vec<i32> {
        self.download(t).into_iter().map(f32::to_bits).map(|b| b as i32).collect()
    }

    /// Records a command into the batch; a full batch is submitted before
    /// the lock is released (so a batch never holds more than `MAX_BATCH`
    /// commands, nor more dispatches than the parameter buffer has slots).
    fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut p = self.pending.lock().unwrap();
        self.record_locked(&mut p, f)
    }

    fn record_locked<R>(&self, p: &mut Batch, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let enc = p.enc.get_or_insert_with(|| self.device.create_command_encoder(&Default::default()));
        let r = f(enc);
        p.commands += 1;
        if p.commands >= MAX_BATCH {
            self.submit_locked(p);
        }
        r
    }

    fn pipeline(&self, file: &'static str, src: &'static str, entry: &'static str) -> Pipeline {
        if let Some(p) = self.pipelines.lock().unwrap().get(&(file, entry)) {
            return p.clone();
        }
        let module = {
            let mut mods = self.modules.lock().unwrap();
            mods.entry(file)
                .or_insert_with(|| {
                    let code = format!("{}\n{}", include_str!("kernels/common.wgsl"), src);
                    self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(file),
                        source: wgpu::ShaderSource::Wgsl(code.into()),
                    })
                })
                .clone()
        };
        let p = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = p.get_bind_group_layout(0);
        self.pipelines.lock().unwrap().insert((file, entry), (p.clone(), layout.clone()));
        (p, layout)
    }

    /// Records one dispatch of `kernel.entry` with parameter words `params`
    /// at binding 0 and `(binding, tensor)` pairs, over `groups` workgroups.
    /// The parameters take the next slot of the batch's parameter block (no
    /// buffer is created); the bind group is made per dispatch.
    pub(crate) fn dispatch(&self, k: Kernel, entry: &'static str, params: &[u32], bufs: &[(u32, &GpuTensor)], groups: [u32; 3]) {
        if groups.contains(&0) {
            return;
        }
        assert!(params.len() <= PARAM_WORDS, "{entry}: {} parameter words > {PARAM_WORDS}", params.len());
        let (pipe, layout) = self.pipeline(k.0, k.1, entry);
        let mut p = self.pending.lock().unwrap();
        // Commands >= dispatches and a batch is submitted at MAX_BATCH
        // commands, so a slot is always free here.
        debug_assert!(p.dispatches < MAX_BATCH);
        let offset = p.dispatches as u64 * self.param_stride;
        p.dispatches += 1;
        p.params.resize((offset + self.param_stride) as usize, 0);
        p.params[offset as usize..offset as usize + 4 * params.len()].copy_from_slice(bytemuck::cast_slice(params));
        let param_binding = wgpu::BufferBinding {
            buffer: &self.params,
            offset,
            size: std::num::NonZeroU64::new(self.param_stride),
        };
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(param_binding) }];
        entries.extend(bufs.iter().map(|(b, t)| wgpu::BindGroupEntry { binding: *b, resource: t.buffer().as_entire_binding() }));
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        self.record_locked(&mut p, |enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(entry), timestamp_writes: None });
            pass.set_pipeline(&pipe);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
    }

    /// Workgroup grid for `count` workgroups, folded into (x, y) under the
    /// per-dimension limit; kernels unfold it with `wlin`/`lin`.
    pub(crate) fn grid(&self, count: usize) -> [u32; 3] {
        if count == 0 {
            return [0, 1, 1];
        }
        let maxd = self.limits.max_compute_workgroups_per_dimension.max(1) as usize;
        if count <= maxd {
            [count as u32, 1, 1]
        } else {
            let y = count.div_ceil(maxd);
            let x = count.div_ceil(y);
            [x as u32, y as u32, 1]
        }
    }

    /// Grid for one thread per element with 256-wide workgroups.
    pub(crate) fn grid_threads(&self, n: usize) -> [u32; 3] {
        self.grid(n.div_ceil(256))
    }
}

/// A kernel source file: (name, WGSL text).
#[derive(Clone, Copy)]
pub(crate) struct Kernel(pub &'static str, pub &'static str);
