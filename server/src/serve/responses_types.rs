//! The Responses API's wire types (`POST /v1/responses`): the request as clients send it
//! (Codex CLI, the Agents SDK, `client.responses`), and the response object and output
//! items we send back. Fields we do not act on are accepted and ignored, as OpenAI does
//! for fields a model does not support.

use super::responses_tools::{ResponsesTool, ResponsesToolChoice};
use super::structured_types::JsonSchemaDoc;
use super::tenancy::CacheSalt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Deserialize, Debug, Default, ToSchema)]
pub struct CreateResponse {
    pub model: Option<String>,
    pub input: Option<Input>,
    pub instructions: Option<String>,
    /// Tool types we cannot call are skipped, not refused (see responses_tools).
    pub tools: Option<Vec<ResponsesTool>>,
    pub tool_choice: Option<ResponsesToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    #[schema(minimum = 1)]
    pub max_output_tokens: Option<usize>,
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f32>,
    pub text: Option<TextConfig>,
    pub stream: Option<bool>,
    /// Default true, as OpenAI's: the response is kept for `previous_response_id`.
    pub store: Option<bool>,
    pub previous_response_id: Option<String>,
    // `include` (encrypted reasoning, logprobs) asks for output this server does not
    // produce: like any other unknown field, it is ignored.
    /// The cache-locality key: used as the engine's session key, like `user`.
    pub prompt_cache_key: Option<String>,
    pub user: Option<String>,
    pub metadata: Option<Value>,
    /// looptree's extensions, as on chat completions: the output constrained to a regex
    /// or a Lark grammar, and extra chat-template variables (`enable_thinking`).
    pub regex: Option<String>,
    pub grammar: Option<String>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// A cache of its own (vLLM's field): no other salt reuses or learns of its prefix.
    pub cache_salt: Option<CacheSalt>,
}

/// `input`: a string (one user message) or a list of items.
#[derive(Deserialize, Debug, ToSchema)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// An input item, typed after a missing `type` on a `{role, content}` object is read as
/// `message` (the "easy" input message form).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Message(MessageItem),
    FunctionCall(FunctionCallItem),
    FunctionCallOutput(FunctionCallOutputItem),
    /// Reasoning from an earlier turn: its text goes with the assistant turn after it,
    /// for the template to render or drop (encrypted reasoning is another model's).
    Reasoning(ReasoningItem),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Default)]
pub struct ReasoningItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Vec<TextOnly>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<TextOnly>>,
}

/// A part of which only the text is read (`reasoning_text`, `summary_text`).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct TextOnly {
    pub text: String,
}

impl ReasoningItem {
    /// The reasoning as written, else its summary.
    pub fn text(&self) -> String {
        let join = |parts: &[TextOnly]| {
            parts
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        match (&self.content, &self.summary) {
            (Some(c), _) if !c.is_empty() => join(c),
            (_, Some(s)) => join(s),
            _ => String::new(),
        }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct MessageItem {
    pub role: Role,
    pub content: MessageContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    System,
    Developer,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    InputText {
        text: String,
    },
    OutputText {
        text: String,
        #[serde(default)]
        annotations: Vec<Value>,
        #[serde(default)]
        logprobs: Vec<Value>,
    },
    Refusal {
        refusal: String,
    },
    InputImage(Value),
    InputFile(Value),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct FunctionCallItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub call_id: String,
    pub name: String,
    /// A JSON string, as the model wrote it.
    pub arguments: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct FunctionCallOutputItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub call_id: String,
    pub output: ToolOutput,
}

/// A tool's output: a string, or a list of content parts (text is kept).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum ToolOutput {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq, ToSchema)]
pub struct TextConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    Text,
    JsonObject,
    JsonSchema {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        schema: JsonSchemaDoc,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// The response object, in every non-streamed reply and in the stream's lifecycle events.
#[derive(Serialize, Debug, Clone)]
pub struct ResponseObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    pub status: Status,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<usize>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub text: TextConfig,
    pub tool_choice: ResponsesToolChoice,
    pub tools: Vec<ResponsesTool>,
    pub truncation: &'static str,
    pub usage: Option<ResponseUsage>,
    pub user: Option<String>,
    pub metadata: Value,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

#[derive(Serialize, Debug, Clone)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

#[derive(Serialize, Debug, Clone, Copy, Default)]
pub struct ResponseUsage {
    pub input_tokens: usize,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: usize,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: usize,
}

#[derive(Serialize, Debug, Clone, Copy, Default)]
pub struct InputTokensDetails {
    pub cached_tokens: usize,
}

#[derive(Serialize, Debug, Clone, Copy, Default)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: usize,
}

impl ResponseUsage {
    pub fn new(input: usize, output: usize, cached: usize) -> Self {
        ResponseUsage {
            input_tokens: input,
            input_tokens_details: InputTokensDetails {
                cached_tokens: cached,
            },
            output_tokens: output,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: input + output,
        }
    }

    /// Of the output tokens, those spent reasoning.
    pub fn with_reasoning(mut self, reasoning_tokens: usize) -> Self {
        self.output_tokens_details.reasoning_tokens = reasoning_tokens;
        self
    }
}

/// An output item: the model's reasoning, the assistant's text, or one function call.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// A thinking model's reasoning, as written (`content`); it writes no summary.
    Reasoning {
        id: String,
        summary: Vec<SummaryText>,
        content: Vec<ReasoningText>,
        status: &'static str,
    },
    Message {
        id: String,
        status: &'static str,
        role: &'static str,
        content: Vec<OutputText>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: &'static str,
    },
}

/// `{"type": "output_text", "text", "annotations": []}`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    pub annotations: Vec<Value>,
    pub logprobs: Vec<Value>,
}

impl OutputText {
    pub fn new(text: String) -> Self {
        OutputText {
            kind: "output_text",
            text,
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// `{"type": "reasoning_text", "text"}`: a reasoning item's content part.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ReasoningText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

impl ReasoningText {
    pub fn new(text: String) -> Self {
        ReasoningText {
            kind: "reasoning_text",
            text,
        }
    }
}

/// `{"type": "summary_text", "text"}` (never written: the model gives no summary).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SummaryText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

/// A content part in the stream's content_part events: a message's text or a reasoning
/// item's text.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum StreamPart {
    Text(OutputText),
    Reasoning(ReasoningText),
}

impl OutputItem {
    /// The same item as an input item, to replay it in a later turn's conversation.
    pub fn as_input(&self) -> Item {
        match self {
            OutputItem::Reasoning { id, content, .. } => Item::Reasoning(ReasoningItem {
                id: Some(id.clone()),
                summary: None,
                content: Some(
                    content
                        .iter()
                        .map(|c| TextOnly {
                            text: c.text.clone(),
                        })
                        .collect(),
                ),
            }),
            OutputItem::Message { id, content, .. } => Item::Message(MessageItem {
                role: Role::Assistant,
                content: MessageContent::Parts(
                    content
                        .iter()
                        .map(|c| ContentPart::OutputText {
                            text: c.text.clone(),
                            annotations: Vec::new(),
                            logprobs: Vec::new(),
                        })
                        .collect(),
                ),
                id: Some(id.clone()),
                status: None,
            }),
            OutputItem::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                ..
            } => Item::FunctionCall(FunctionCallItem {
                id: Some(id.clone()),
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
                status: None,
            }),
        }
    }
}
