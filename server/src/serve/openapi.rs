//! `GET /openapi.json`: every route, with each request body's schema derived from the
//! types its handler deserializes the body into, so the published schema cannot drift
//! from what is parsed (and API fuzzers can aim at the real fields and limits).

use super::anthropic::MessagesWire;
use super::chat::ChatWire;
use super::completions::CompletionWire;
use super::kv_peers::PrefixAsk;
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
    Components, Content, InfoBuilder, OpenApi, OpenApiBuilder, Paths, RefOr, Required, Response,
};
use utoipa::ToSchema;

pub async fn handle() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(
        DOC.get_or_init(|| serde_json::to_value(document()).expect("the document serializes"))
            .clone(),
    )
}

/// The document: one entry per route in routes.rs (a test holds the two together).
pub fn document() -> OpenApi {
    let mut d = Doc::default();
    let sampling = SamplingParams::request_schema;
    let chat = d.part::<ChatWire>();
    d.post("/v1/chat/completions", vec![chat, sampling()]);
    let completion = d.part::<CompletionWire>();
    d.post("/v1/completions", vec![completion, sampling()]);
    let response = d.part::<CreateResponse>();
    d.post("/v1/responses", vec![response]);
    let messages = d.part::<MessagesWire>();
    d.post("/v1/messages", vec![messages.clone()]);
    d.post("/v1/messages/count_tokens", vec![messages]);
    let tokenize = d.part::<TokenizeWire>();
    d.post("/tokenize", vec![tokenize]);
    let detokenize = d.part::<DetokenizeWire>();
    d.post("/detokenize", vec![detokenize]);
    let prefix = d.part::<PrefixAsk>();
    d.post("/looptree/kv/prefix", vec![prefix]);
    for path in [
        "/",
        "/v1/models",
        "/v1/models/{id}",
        "/health",
        "/metrics",
        "/v1/loads",
        "/v1/responses/{id}",
        "/openapi.json",
    ] {
        d.op(path, HttpMethod::Get, None);
    }
    d.op("/v1/responses/{id}", HttpMethod::Delete, None);
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
    /// `T`'s schema, with the schemas it refers to added to the components.
    fn part<T: ToSchema>(&mut self) -> RefOr<Schema> {
        T::schemas(&mut self.schemas);
        T::schema()
    }

    /// A POST whose body is read as each of `parts` in turn: a field two parts name is
    /// the first's, as the handlers parse it (chat reads `logprobs` as its flag and hands
    /// the rest to the sampling fields).
    fn post(&mut self, path: &str, parts: Vec<RefOr<Schema>>) {
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
        self.op(path, HttpMethod::Post, Some(rb));
    }

    fn op(&mut self, path: &str, method: HttpMethod, body: Option<RequestBody>) {
        let mut op = Operation::new();
        op.request_body = body.map(Into::into);
        // The error body's shape is checked by tests, not declared: it is built by hand.
        op.responses.responses.insert(
            "default".into(),
            Response::new("The reply or an error").into(),
        );
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
