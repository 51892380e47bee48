//! `--device`: which hardware runs the model. The default is the best the binary was
//! built for and the machine has (CUDA, then Metal, then the CPU).

use anyhow::{bail, Context, Result};
use candle_core::Device;

pub fn parse_device(spec: Option<&str>) -> Result<Device> {
    let spec = spec.unwrap_or("auto").trim().to_ascii_lowercase();
    let (kind, ordinal) = match spec.split_once(':') {
        Some((k, n)) => (
            k.to_string(),
            Some(
                n.parse::<usize>()
                    .with_context(|| format!("bad device ordinal in `{spec}`"))?,
            ),
        ),
        None => (spec.clone(), None),
    };
    match kind.as_str() {
        "cpu" if ordinal.is_none() => Ok(Device::Cpu),
        "cuda" | "gpu" => {
            if !candle_core::utils::cuda_is_available() {
                bail!("this looptree was built without CUDA (rebuild with `--features cuda`)");
            }
            Device::new_cuda(ordinal.unwrap_or(0))
                .with_context(|| format!("cannot open CUDA device {}", ordinal.unwrap_or(0)))
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                bail!("this looptree was built without Metal (rebuild with `--features metal` on macOS)");
            }
            Device::new_metal(ordinal.unwrap_or(0))
                .with_context(|| format!("cannot open Metal device {}", ordinal.unwrap_or(0)))
        }
        "auto" if ordinal.is_none() => Ok(best_available()),
        _ => bail!("unknown --device `{spec}` (expected cpu, cuda, cuda:N, metal or auto)"),
    }
}

fn best_available() -> Device {
    if candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(d) => return d,
            Err(e) => tracing::warn!("built with CUDA but no usable GPU ({e}); running on the CPU"),
        }
    }
    if candle_core::utils::metal_is_available() {
        match Device::new_metal(0) {
            Ok(d) => return d,
            Err(e) => {
                tracing::warn!("built with Metal but no usable GPU ({e}); running on the CPU")
            }
        }
    }
    Device::Cpu
}

/// A short name for logs and reports.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) | Device::Metal(_) => match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
            candle_core::DeviceLocation::Cpu => "cpu".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_work_everywhere_and_bad_names_are_refused() {
        assert!(parse_device(Some("cpu")).unwrap().is_cpu());
        assert!(parse_device(None).is_ok());
        assert!(parse_device(Some("tpu")).is_err());
        assert!(parse_device(Some("cpu:1")).is_err());
        assert!(parse_device(Some("cuda:x")).is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let e = parse_device(Some("cuda")).unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
