//! With the `cuda` feature, compiles looptree's CUDA kernels (cuda/*.cu) to PTX with nvcc;
//! the PTX is embedded in the crate and loaded by the driver at first use.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=cuda");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let nvcc = std::env::var("NVCC").ok().or_else(|| {
        std::env::var("CUDA_HOME")
            .ok()
            .map(|h| format!("{h}/bin/nvcc"))
    });
    let nvcc = nvcc.unwrap_or_else(|| "nvcc".into());
    // PTX for an older compute capability is JIT-compiled by the driver for newer GPUs.
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ["paged_attention", "kv_write", "fused"] {
        let src = format!("cuda/{name}.cu");
        let ptx = out.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args([
                "--ptx",
                "-O3",
                "-std=c++17",
                &format!("-arch=compute_{cap}"),
                "-Icuda",
                "-o",
            ])
            .arg(&ptx)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run `{nvcc}` (set NVCC or CUDA_HOME): {e}"));
        assert!(status.success(), "nvcc failed on {src}");
    }
}
