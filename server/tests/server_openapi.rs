//! `GET /openapi.json`: valid JSON naming every route in routes.rs with its methods, each
//! POST with a request schema built from the types its handler parses.

mod common;

use common::Server;
use serde_json::Value;

/// Every `$ref` in `v` points into the document's components.
fn check_refs(v: &Value, doc: &Value, bad: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
                if doc["components"]["schemas"].get(name).is_none() {
                    bad.push(r.clone());
                }
            }
            m.values().for_each(|x| check_refs(x, doc, bad));
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(x, doc, bad)),
        _ => {}
    }
}

#[test]
fn openapi_json_lists_every_route_with_its_request_schema() {
    let s = Server::start(&[]);
    let (status, doc) = s.get("/openapi.json");
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let routes = common::routes();
    assert!(routes.len() >= 15, "routes.rs parsed to {routes:?}");
    for (path, methods) in &routes {
        let item = &doc["paths"][path];
        assert!(item.is_object(), "{path} is not in /openapi.json");
        for m in methods {
            assert!(item[m].is_object(), "{m} {path} is not in /openapi.json");
            if *m == "post" {
                let schema = &item[m]["requestBody"]["content"]["application/json"]["schema"];
                let fields = schema["properties"].as_object();
                assert!(
                    fields.is_some_and(|f| !f.is_empty()),
                    "POST {path} has no request fields: {schema}"
                );
            }
        }
        if path.contains('{') {
            let params = &item[methods[0]]["parameters"];
            assert_eq!(params[0]["in"], "path", "{path}: {params}");
        }
    }
    // Nothing listed that the router does not serve.
    let listed = doc["paths"].as_object().unwrap().len();
    assert_eq!(listed, routes.len(), "{:?}", doc["paths"]);

    // Chat's body is its own fields and the sampling fields, with the engine's limits.
    let chat = &doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    let f = &chat["properties"];
    assert_eq!(chat["required"], serde_json::json!(["messages"]), "{chat}");
    assert_eq!(f["n"]["maximum"], 128, "{}", f["n"]);
    assert_eq!(f["temperature"]["maximum"], 2, "{}", f["temperature"]);
    assert_eq!(f["top_logprobs"]["maximum"], 20, "{}", f["top_logprobs"]);
    // Chat's `logprobs` is its flag, not the sampling count.
    assert!(
        f["logprobs"].to_string().contains("boolean"),
        "{}",
        f["logprobs"]
    );
    let completion = &doc["paths"]["/v1/completions"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["properties"];
    assert_eq!(
        completion["logprobs"]["maximum"], 20,
        "{}",
        completion["logprobs"]
    );
    let mut bad = Vec::new();
    check_refs(&doc["paths"], &doc, &mut bad);
    assert!(bad.is_empty(), "dangling $refs: {bad:?}");
}
