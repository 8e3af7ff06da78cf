//! Safetensors reading (memory-mapped; f32, f64, bf16, f16 on disk; single
//! file or sharded with `model.safetensors.index.json`) and atomic writing
//! (temp file, fsync, rename).
use crate::error::{DartError, Result};
use crate::float::Float;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A safetensors file's bytes: mapped from disk, or handed over in memory
/// (the WebAssembly build has no file system; its host reads the file).
enum FileBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

pub struct TensorStore {
    files: Vec<(PathBuf, FileBytes)>,
    /// name -> file index
    index: HashMap<String, usize>,
    metadata: HashMap<String, String>,
}

impl TensorStore {
    /// A model folder: `model.safetensors`, or the shards named by
    /// `model.safetensors.index.json`.
    pub fn open_model_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.exists() {
            return Self::open_files(&[single]);
        }
        if index.exists() {
            let text = fs::read_to_string(&index).map_err(|e| DartError::io(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| DartError::Io(format!("{}: {e}", index.display())))?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
                DartError::Io(format!("{}: no \"weight_map\" object", index.display()))
            })?;
            let mut shards: Vec<String> = map.values().filter_map(|s| s.as_str().map(String::from)).collect();
            shards.sort();
            shards.dedup();
            let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
            return Self::open_files(&paths);
        }
        Err(DartError::Io(format!(
            "{}: no model.safetensors or model.safetensors.index.json (pickle .bin checkpoints are not supported)",
            dir.display()
        )))
    }

    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        for p in paths {
            let f = fs::File::open(p).map_err(|e| DartError::io(p, e))?;
            // SAFETY: the file is only read; a concurrent writer would be a user error.
            let mmap = unsafe { Mmap::map(&f) }.map_err(|e| DartError::io(p, e))?;
            files.push((p.clone(), FileBytes::Mapped(mmap)));
        }
        Self::from_files(files)
    }

    /// One safetensors file already in memory; `name` labels it in errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::from_files(vec![(PathBuf::from(name), FileBytes::Owned(bytes))])
    }

    fn from_files(files: Vec<(PathBuf, FileBytes)>) -> Result<Self> {
        let mut index = HashMap::new();
        let mut metadata = HashMap::new();
        for (i, (p, bytes)) in files.iter().enumerate() {
            let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| DartError::io(p, e))?;
            for name in meta.tensors().keys() {
                index.insert(name.clone(), i);
            }
            if let Some(m) = meta.metadata() {
                metadata.extend(m.clone());
            }
        }
        Ok(TensorStore { files, index, metadata })
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.index.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// A tensor converted to T, with its shape.
    pub fn get_any<T: Float>(&self, name: &str) -> Result<(Vec<usize>, Vec<T>)> {
        let &fi = self.index.get(name).ok_or_else(|| {
            let files: Vec<String> = self.files.iter().map(|(p, _)| p.display().to_string()).collect();
            DartError::MissingTensor(format!("{name:?} not found in {}", files.join(", ")))
        })?;
        let (path, bytes) = &self.files[fi];
        let st = SafeTensors::deserialize(bytes).map_err(|e| DartError::io(path, e))?;
        let view = st.tensor(name).map_err(|e| DartError::io(path, e))?;
        let bytes = view.data();
        let data: Vec<T> = match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| T::from_f64(f32::from_le_bytes(b.try_into().unwrap()) as f64)).collect(),
            Dtype::F64 => bytes.chunks_exact(8).map(|b| T::from_f64(f64::from_le_bytes(b.try_into().unwrap()))).collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| T::from_f64(half::bf16::from_le_bytes([b[0], b[1]]).to_f64()))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| T::from_f64(half::f16::from_le_bytes([b[0], b[1]]).to_f64()))
                .collect(),
            other => {
                return Err(DartError::InvalidArgument(format!(
                    "{name:?} in {} has dtype {other:?}, expected F32, F64, BF16 or F16",
                    path.display()
                )))
            }
        };
        Ok((view.shape().to_vec(), data))
    }

    /// A tensor that must have exactly `shape`.
    pub fn get<T: Float>(&self, name: &str, shape: &[usize]) -> Result<Vec<T>> {
        let (s, d) = self.get_any(name)?;
        if s != shape {
            return Err(DartError::Shape(format!("{name:?} has shape {s:?}, expected {shape:?}")));
        }
        Ok(d)
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder,
/// fsync, rename, then fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| DartError::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = fs::File::create(&tmp).map_err(|e| DartError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| DartError::io(&tmp, e))?;
        f.sync_all().map_err(|e| DartError::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| DartError::io(path, e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises named tensors (stored as T: F32 for f32, F64 for f64) with
/// string metadata and writes them atomically.
pub fn write_safetensors<T: Float>(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[T])],
    metadata: BTreeMap<String, String>,
) -> Result<()> {
    let dtype = if std::mem::size_of::<T>() == 4 { Dtype::F32 } else { Dtype::F64 };
    let bufs: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| {
            let mut b = Vec::with_capacity(d.len() * std::mem::size_of::<T>());
            for &x in d.iter() {
                if dtype == Dtype::F32 {
                    b.extend_from_slice(&(x.as_f64() as f32).to_le_bytes());
                } else {
                    b.extend_from_slice(&x.as_f64().to_le_bytes());
                }
            }
            b
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bufs)
        .map(|((n, s, _), b)| {
            safetensors::tensor::TensorView::new(dtype, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| DartError::Shape(format!("{n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = metadata.into_iter().collect();
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| DartError::io(path, e))?;
    write_atomic(path, &bytes)
}
