//! Model names as runners send them: any name is served by the one model unless
//! --strict-model-name; --served-model-name may repeat (the first is the one shown); a
//! model served from a file path is listed by the file's stem.

mod common;

use common::{assert_error, Server};
use serde_json::json;
use std::path::PathBuf;

#[test]
fn strict_names_and_aliases() {
    let s = Server::start(&[
        "--strict-model-name",
        "--served-model-name",
        "local",
        "--served-model-name",
        "alias2",
    ]);
    let (_, models) = s.get("/v1/models");
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    assert_eq!(models["data"][0]["id"], "local");
    let chat = |model: &str| json!({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]});
    for name in ["local", "alias2", "smollm2-135m"] {
        let (st, r) = s.post("/v1/chat/completions", &chat(name));
        assert_eq!(
            (st, r["model"].as_str()),
            (200, Some("local")),
            "{name}: {r}"
        );
    }
    let (st, r) = s.post("/v1/chat/completions", &chat("gpt-5-codex"));
    assert_error(st, &r, 404);
    assert_eq!(r["error"]["code"], "model_not_found");
    let (st, r) = s.post("/v1/messages", &json!({"model": "claude-sonnet-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!(
        (st, r["error"]["type"].as_str()),
        (404, Some("not_found_error")),
        "{r}"
    );
    let (st, r) = s.post(
        "/v1/responses",
        &json!({"model": "gpt-5-codex", "input": "Hi", "max_output_tokens": 1}),
    );
    assert_error(st, &r, 404);
    s.wait_idle();
}

#[test]
fn a_model_from_a_path_is_named_by_its_file_stem() {
    let dir = std::env::var_os("LOOPTREE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/looptree/models")
        });
    let file = std::fs::read_dir(&dir)
        .expect("the models directory (bash scripts/fetch-models.sh)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("SmolLM2-135M"))
        })
        .expect("SmolLM2 is fetched");
    let stem = file.file_stem().unwrap().to_string_lossy().to_string();
    let s = Server::start_model(file.to_str().unwrap(), "1", "64MiB", &[]);
    let (_, models) = s.get("/v1/models");
    assert_eq!(models["data"][0]["id"], stem.as_str());
    let (st, r) = s.post("/v1/chat/completions", &json!({"model": "gpt-4o", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!((st, r["model"].as_str()), (200, Some(stem.as_str())), "{r}");
}
