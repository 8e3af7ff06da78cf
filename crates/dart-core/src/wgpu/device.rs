//! Device setup for the wgpu backend: backend selection (cpu | wgpu | auto),
//! adapter choice (pinned by `DART_WGPU_ADAPTER`), the device with the
//! adapter's real limits, a size-class buffer pool, pipelines compiled once,
//! and a command encoder that batches every dispatch until a read-back.
use crate::error::{DartError, Result};
use std::collections::HashMap;
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

/// A device buffer of 4-byte elements (f32, or i32/u32 for indices). Pooled
/// buffers go back to the pool when dropped.
pub struct GpuTensor {
    buf: Option<wgpu::Buffer>,
    len: usize,
    pool: Option<Arc<Mutex<Pool>>>,
}

impl GpuTensor {
    /// Number of 4-byte elements.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("live tensor")
    }
    fn bytes(&self) -> u64 {
        (self.len * 4) as u64
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
    fn class(bytes: u64) -> u64 {
        bytes.max(256).next_power_of_two()
    }
    fn put(&mut self, buf: wgpu::Buffer) {
        self.free.entry(buf.size()).or_default().push(buf);
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Flush the batched commands after this many dispatches (bounds the memory
/// held by per-dispatch parameter blocks).
const MAX_BATCH: usize = 512;

/// A wgpu device ready for the engine's kernels.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pool: Arc<Mutex<Pool>>,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), wgpu::ComputePipeline>>,
    pending: Mutex<(Option<wgpu::CommandEncoder>, usize)>,
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
        Ok(GpuContext {
            device,
            queue,
            adapter: info,
            limits,
            pool: Arc::new(Mutex::new(Pool::default())),
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            pending: Mutex::new((None, 0)),
        })
    }

    /// (buffers created, buffers reused) by the pool so far.
    pub fn pool_stats(&self) -> (usize, usize) {
        let p = self.pool.lock().unwrap();
        (p.allocated, p.reused)
    }

    /// An uninitialised pooled tensor of `len` elements (contents are
    /// whatever the buffer last held; kernels that write every element, or
    /// `zeros`, are the ones to use it with).
    pub fn alloc(&self, len: usize) -> GpuTensor {
        let class = Pool::class((len * 4) as u64);
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
                    self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: None,
                        size: class,
                        usage: STORAGE,
                        mapped_at_creation: false,
                    })
                }
            }
        };
        GpuTensor { buf: Some(buf), len, pool: Some(self.pool.clone()) }
    }

    /// A pooled tensor of zeros.
    pub fn zeros(&self, len: usize) -> GpuTensor {
        let t = self.alloc(len);
        self.fill_zero(&t);
        t
    }

    /// Zeroes a tensor (recorded in the batch, ordered with the kernels).
    pub fn fill_zero(&self, t: &GpuTensor) {
        if t.len == 0 {
            return;
        }
        self.with_encoder(|enc| enc.clear_buffer(t.buffer(), 0, Some(t.bytes())));
    }

    fn init(&self, bytes: &[u8], len: usize) -> GpuTensor {
        let mut data = bytes.to_vec();
        data.resize(data.len().max(16), 0);
        let buf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: &data,
            usage: STORAGE,
        });
        GpuTensor { buf: Some(buf), len, pool: None }
    }

    /// Uploads f32 data into a new device tensor (no flush needed: the buffer
    /// is fresh, so no queued kernel can be reading it).
    pub fn upload(&self, x: &[f32]) -> GpuTensor {
        self.init(bytemuck::cast_slice(x), x.len())
    }
    pub fn upload_i32(&self, x: &[i32]) -> GpuTensor {
        self.init(bytemuck::cast_slice(x), x.len())
    }
    pub fn upload_u32(&self, x: &[u32]) -> GpuTensor {
        self.init(bytemuck::cast_slice(x), x.len())
    }

    /// Overwrites an existing tensor from the host (flushes queued work first
    /// so the write lands after it).
    pub fn write(&self, t: &GpuTensor, x: &[f32]) {
        assert!(x.len() <= t.len, "write: {} > {}", x.len(), t.len);
        self.flush();
        self.queue.write_buffer(t.buffer(), 0, bytemuck::cast_slice(x));
    }

    /// Device-to-device copy of `len` elements.
    pub fn copy(&self, dst: &GpuTensor, src: &GpuTensor, len: usize) {
        assert!(len <= dst.len && len <= src.len);
        if len == 0 {
            return;
        }
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, (len * 4) as u64));
    }

    /// Device-to-device copy of `len` elements at element offsets.
    pub fn copy_region(&self, dst: &GpuTensor, dst_off: usize, src: &GpuTensor, src_off: usize, len: usize) {
        assert!(dst_off + len <= dst.len && src_off + len <= src.len);
        if len == 0 {
            return;
        }
        self.with_encoder(|enc| {
            enc.copy_buffer_to_buffer(src.buffer(), (src_off * 4) as u64, dst.buffer(), (dst_off * 4) as u64, (len * 4) as u64)
        });
    }

    /// Submits every batched command.
    /// Submits the batched commands. The lock is held through the submit:
    /// otherwise another thread could take a fresh encoder, record a read of
    /// our results and submit it before our batch, reading stale memory.
    pub fn flush(&self) {
        let mut p = self.pending.lock().unwrap();
        p.1 = 0;
        if let Some(enc) = p.0.take() {
            self.queue.submit([enc.finish()]);
        }
    }

    /// Reads tensors back: one submit, one wait, for all of them.
    pub fn download_many(&self, ts: &[&GpuTensor]) -> Vec<Vec<f32>> {
        let stagings: Vec<Option<wgpu::Buffer>> = ts
            .iter()
            .map(|t| {
                (t.len > 0).then(|| {
                    let s = self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("readback"),
                        size: t.bytes(),
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    self.with_encoder(|enc| enc.copy_buffer_to_buffer(t.buffer(), 0, &s, 0, t.bytes()));
                    s
                })
            })
            .collect();
        self.flush();
        for s in stagings.iter().flatten() {
            s.map_async(wgpu::MapMode::Read, .., |r| r.expect("map readback buffer"));
        }
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("device poll");
        stagings
            .into_iter()
            .map(|s| match s {
                None => Vec::new(),
                Some(s) => {
                    let v = {
                        let view = s.get_mapped_range(..).expect("mapped range");
                        bytemuck::cast_slice::<u8, f32>(&view).to_vec()
                    };
                    s.unmap();
                    v
                }
            })
            .collect()
    }

    pub fn download(&self, t: &GpuTensor) -> Vec<f32> {
        self.download_many(&[t]).pop().unwrap()
    }

    pub fn download_i32(&self, t: &GpuTensor) -> Vec<i32> {
        self.download(t).into_iter().map(f32::to_bits).map(|b| b as i32).collect()
    }

    fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let full = {
            let mut p = self.pending.lock().unwrap();
            let enc = p.0.get_or_insert_with(|| self.device.create_command_encoder(&Default::default()));
            let r = f(enc);
            p.1 += 1;
            (r, p.1 >= MAX_BATCH)
        };
        if full.1 {
            self.flush();
        }
        full.0
    }

    fn pipeline(&self, file: &'static str, src: &'static str, entry: &'static str) -> wgpu::ComputePipeline {
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
        self.pipelines.lock().unwrap().insert((file, entry), p.clone());
        p
    }

    /// Records one dispatch of `kernel.entry` with parameter words `params`
    /// at binding 0 and `(binding, tensor)` pairs, over `groups` workgroups.
    pub(crate) fn dispatch(&self, k: Kernel, entry: &'static str, params: &[u32], bufs: &[(u32, &GpuTensor)], groups: [u32; 3]) {
        if groups.contains(&0) {
            return;
        }
        let pipe = self.pipeline(k.0, k.1, entry);
        let pbuf = self.init(bytemuck::cast_slice(params), params.len());
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: pbuf.buffer().as_entire_binding() }];
        entries.extend(bufs.iter().map(|(b, t)| wgpu::BindGroupEntry { binding: *b, resource: t.buffer().as_entire_binding() }));
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &entries,
        });
        self.with_encoder(|enc| {
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
