//! The GGUF files' own chat templates against llama.cpp's rendered reference prompts, and
//! Qwen's tool-calling template.

mod common;

use common::{gguf, reference_cases, GEMMA, QWEN, SMOLLM2};
use looptree_models::chat_template::ChatTemplate;
use looptree_models::tokenizer::Tokenizer;
use serde_json::json;

fn check_reference(model: &str, file: &str) {
    let ct = gguf(model);
    let template = ChatTemplate::from_gguf(&ct)
        .unwrap()
        .expect("the GGUF has a chat template");
    let tokenizer = Tokenizer::from_gguf(&ct).unwrap();
    let mut chats = 0;
    for case in reference_cases(file) {
        if case["kind"] != "chat" {
            continue;
        }
        chats += 1;
        let messages = case["messages"].as_array().unwrap();
        let prompt = template.render(messages, None, true).unwrap();
        assert_eq!(
            prompt,
            case["prompt"].as_str().unwrap(),
            "{file} case {}",
            case["id"]
        );
        // Template then tokenizer: the exact ids the reference ran.
        let want: Vec<u32> = serde_json::from_value(case["prompt_tokens"].clone()).unwrap();
        assert_eq!(
            tokenizer.encode(&prompt, true).unwrap(),
            want,
            "{file} case {}",
            case["id"]
        );
    }
    assert!(chats > 0, "{file} has no chat cases");
}

#[test]
fn smollm2_template_matches_reference() {
    check_reference(SMOLLM2, "smollm2-135m-q4_1.jsonl");
}

#[test]
fn qwen_template_matches_reference() {
    check_reference(QWEN, "qwen2.5-coder-0.5b.jsonl");
}

#[test]
fn gemma_base_model_has_no_template() {
    assert!(ChatTemplate::from_gguf(&gguf(GEMMA)).unwrap().is_none());
}

fn weather_tool() -> serde_json::Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city — in °C",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
                "required": ["city"]
            }
        }
    })
}

#[test]
fn qwen_renders_tool_definitions_in_tools_section() {
    let template = ChatTemplate::from_gguf(&gguf(QWEN)).unwrap().unwrap();
    let messages = [json!({"role": "user", "content": "Weather in Paris?"})];
    let out = template
        .render(&messages, Some(&[weather_tool()]), true)
        .unwrap();
    // Python json.dumps: ", " and ": " separators, keys in the given order, raw non-ASCII.
    let tool_json = r#"{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city — in °C", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}}, "required": ["city"]}}}"#;
    // The section itself (the instructions above it mention "<tools></tools>" inline).
    let section = out.split("<tools>\n").nth(1).expect("a <tools> section");
    let section = section.split("\n</tools>").next().unwrap();
    assert_eq!(section, tool_json, "{out}");
    assert!(
        out.starts_with("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud."),
        "{out}"
    );
    assert!(
        out.ends_with("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"),
        "{out}"
    );
}

#[test]
fn qwen_renders_tool_calls_and_tool_results() {
    let template = ChatTemplate::from_gguf(&gguf(QWEN)).unwrap().unwrap();
    let messages = [
        json!({"role": "system", "content": "Be brief."}),
        json!({"role": "user", "content": "Weather in Paris and Rome?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
        ]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "18°C"}),
        json!({"role": "tool", "tool_call_id": "call_2", "content": "24°C"}),
    ];
    let out = template
        .render(&messages, Some(&[weather_tool()]), true)
        .unwrap();
    let tail = concat!(
        "<|im_start|>user\nWeather in Paris and Rome?<|im_end|>\n",
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call><|im_end|>\n",
        "<|im_start|>user\n<tool_response>\n18°C\n</tool_response>\n<tool_response>\n24°C\n</tool_response><|im_end|>\n",
        "<|im_start|>assistant\n",
    );
    assert!(out.ends_with(tail), "{out}");
    assert!(
        out.starts_with("<|im_start|>system\nBe brief.\n\n# Tools"),
        "{out}"
    );
}

#[test]
fn smollm2_template_without_system_message_adds_default() {
    let template = ChatTemplate::from_gguf(&gguf(SMOLLM2)).unwrap().unwrap();
    let out = template
        .render(&[json!({"role": "user", "content": "Hi"})], None, false)
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn template_from_tokenizer_config_string_and_list() {
    let dir = std::env::temp_dir().join(format!("looptree-chat-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer_config.json");
    let msgs = [json!({"role": "user", "content": "x"})];

    let config = json!({"bos_token": {"content": "<s>"}, "eos_token": "</s>",
        "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}{{ eos_token }}"});
    std::fs::write(&path, config.to_string()).unwrap();
    let t = ChatTemplate::from_tokenizer_config(&path).unwrap().unwrap();
    assert_eq!(t.render(&msgs, None, false).unwrap(), "<s>[x]</s>");

    let config = json!({"chat_template": [
        {"name": "default", "template": "d{{ messages | length }}"},
        {"name": "tool_use", "template": "t{{ tools[0].name }}"}
    ]});
    std::fs::write(&path, config.to_string()).unwrap();
    let t = ChatTemplate::from_tokenizer_config(&path).unwrap().unwrap();
    assert_eq!(t.render(&msgs, None, false).unwrap(), "d1");
    assert_eq!(
        t.render(&msgs, Some(&[json!({"name": "f"})]), false)
            .unwrap(),
        "tf"
    );

    std::fs::write(&path, json!({"eos_token": "</s>"}).to_string()).unwrap();
    assert!(ChatTemplate::from_tokenizer_config(&path)
        .unwrap()
        .is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
