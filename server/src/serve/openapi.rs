//! `GET /openapi.json`: every route, with each request body's schema derived from the
//! types its handler deserializes the body into, so the published schema cannot drift
//! from what is parsed (and API fuzzers can aim at the real fields and limits), and each
//! operation's error replies: the statuses it can refuse with, in its error shape.

use super::anthropic::{AnthropicErrorBody, MaxTokensRequired, MessagesWire};
use super::chat::ChatWire;
use super::completions::CompletionWire;
use super::error::ErrorBody;
use super::kv_peers::PrefixAsk;
use super::models::HealthBody;
use super::responses_types::CreateResponse;
use super::tokenize::{DetokenizeWire, TokenizeWire};
use axum::Json;
use looptree_engine::sampling::SamplingParams;
use serde_json::Value;
use std::sync::OnceLock;
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::{
    Components, Content, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    Response,
};
use utoipa::ToSchema;

pub async fn handle() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(
        DOC.get_or_init(|| serde_json::to_value(document()).expect("the document serializes"))
            .clone(),
    )
}

/// Refusals every POST of a JSON body can meet: a bad body (400), no key (401), an
/// unknown model under --strict-model-name (404), a body too slow (408) or too large
/// (413), a request head too large (431).
const POST: &[u16] = &[400, 401, 404, 408, 413, 431];
/// A generation route also refuses past --max-concurrent or a full queue (429).
const GENERATE: &[u16] = &[400, 401, 404, 408, 413, 429, 431];

/// The document: one entry per route in routes.rs (a test holds the two together).
pub fn document() -> OpenApi {
    let mut d = Doc::default();
    d.part::<ErrorBody>();
    d.part::<AnthropicErrorBody>();
    d.part::<HealthBody>();
    let sampling = SamplingParams::request_schema;
    let chat = d.part::<ChatWire>();
    d.post("/v1/chat/completions", vec![chat, sampling()], GENERATE);
    let completion = d.part::<CompletionWire>();
    d.post("/v1/completions", vec![completion, sampling()], GENERATE);
    let response = d.part::<CreateResponse>();
    d.post("/v1/responses", vec![response], GENERATE);
    // /v1/messages requires `max_tokens`; count_tokens, the same body, does not.
    let messages = d.part::<MessagesWire>();
    let max_tokens = d.part::<MaxTokensRequired>();
    d.post("/v1/messages", vec![max_tokens, messages.clone()], GENERATE);
    d.post("/v1/messages/count_tokens", vec![messages], POST);
    let tokenize = d.part::<TokenizeWire>();
    d.post("/tokenize", vec![tokenize], POST);
    let detokenize = d.part::<DetokenizeWire>();
    d.post("/detokenize", vec![detokenize], POST);
    let prefix = d.part::<PrefixAsk>();
    // 404 also when --kv-export is off.
    d.post("/looptree/kv/prefix", vec![prefix], POST);
    // Open routes (no key), then the API's, which need the key when one is set.
    for path in ["/", "/openapi.json"] {
        d.op(path, HttpMethod::Get, None, &[431]);
    }
    d.op("/health", HttpMethod::Get, None, &[431, 503]);
    // 401 only with --private-metrics.
    d.op("/metrics", HttpMethod::Get, None, &[401, 431]);
    for path in ["/v1/models", "/v1/loads"] {
        d.op(path, HttpMethod::Get, None, &[401, 431]);
    }
    for (path, method) in [
        ("/v1/models/{id}", HttpMethod::Get),
        ("/v1/responses/{id}", HttpMethod::Get),
        ("/v1/responses/{id}", HttpMethod::Delete),
    ] {
        d.op(path, method, None, &[401, 404, 431]);
    }
    let mut components = Components::new();
    components.schemas.extend(d.schemas);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("looptree")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(d.paths)
        .components(Some(components))
        .build()
}

#[derive(Default)]
struct Doc {
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Doc {
    /// `T`'s schema, with `T` and the schemas it refers to added to the components.
    fn part<T: ToSchema>(&mut self) -> RefOr<Schema> {
        T::schemas(&mut self.schemas);
        let name = T::name().to_string();
        if !self.schemas.iter().any(|(n, _)| *n == name) {
            self.schemas.push((name, T::schema()));
        }
        T::schema()
    }

    /// A POST whose body is read as each of `parts` in turn: a field two parts name is
    /// the first's, as the handlers parse it (chat reads `logprobs` as its flag and hands
    /// the rest to the sampling fields).
    fn post(&mut self, path: &str, parts: Vec<RefOr<Schema>>, errors: &[u16]) {
        let mut body = Object::new();
        body.schema_type = Type::Object.into();
        for part in parts {
            let RefOr::T(Schema::Object(o)) = part else {
                panic!("{path}: a request part is not an object schema");
            };
            for (name, field) in o.properties {
                body.properties.entry(name).or_insert(field);
            }
            for r in o.required {
                if !body.required.contains(&r) {
                    body.required.push(r);
                }
            }
        }
        let mut rb = RequestBody::new();
        rb.required = Some(Required::True);
        rb.content.insert(
            "application/json".into(),
            Content::new(Some(Schema::Object(body))).into(),
        );
        self.op(path, HttpMethod::Post, Some(rb), errors);
    }

    fn op(&mut self, path: &str, method: HttpMethod, body: Option<RequestBody>, errors: &[u16]) {
        let mut op = Operation::new();
        op.request_body = body.map(Into::into);
        op.responses
            .responses
            .insert("200".into(), Response::new("The reply").into());
        for &status in errors {
            let (what, shape) = error_reply(path, status);
            let mut r = Response::new(what);
            r.content.insert(
                "application/json".into(),
                Content::new(Some(Ref::from_schema_name(shape))).into(),
            );
            op.responses.responses.insert(status.to_string(), r.into());
        }
        if path.contains("{id}") {
            let mut id = Parameter::new("id");
            id.parameter_in = ParameterIn::Path;
            id.schema = Some(Schema::Object(Object::with_type(Type::String)).into());
            op.parameters = Some(vec![id.into()]);
        }
        let item = PathItem::new(method, op);
        match self.paths.paths.get_mut(path) {
            Some(held) => held.merge_operations(item),
            None => {
                self.paths.paths.insert(path.to_string(), item);
            }
        }
    }
}

/// A refusal's description and body schema: Anthropic's shape on its routes, /health's
/// own status body, OpenAI's everywhere else.
fn error_reply(path: &str, status: u16) -> (&'static str, String) {
    let what = match status {
        400 => "A field is missing or invalid (`param` names it)",
        401 => "A missing or wrong API key",
        404 => "An unknown model, response, id or disabled route",
        408 => "The body did not arrive within --body-timeout",
        413 => "The body is larger than --max-body-bytes",
        429 => "Too many requests in flight or queued; retry after `Retry-After` seconds",
        431 => "The request head is past --max-header-bytes or --max-headers",
        503 => "The engine has stopped; the server is shutting down",
        _ => "An error",
    };
    let shape = if path == "/health" && status == 503 {
        HealthBody::name()
    } else if path.starts_with("/v1/messages") {
        AnthropicErrorBody::name()
    } else {
        ErrorBody::name()
    };
    (what, shape.to_string())
}
