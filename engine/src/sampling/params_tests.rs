//! Parsing and checking [`SamplingParams`]: OpenAI's shapes, defaults, ranges with the
//! field named, token ids against the vocabulary.

use super::params::*;

fn parse(json: &str) -> Result<SamplingParams, serde_json::Error> {
    serde_json::from_str(json)
}

#[test]
fn empty_body_gives_openai_defaults() {
    let p = parse("{}").unwrap();
    assert_eq!(p, SamplingParams::default());
    assert_eq!((p.temperature, p.top_p, p.n), (1.0, 1.0, 1));
    assert!(p.validate().is_ok());
}

#[test]
fn nulls_mean_defaults_and_unknown_fields_are_ignored() {
    let p = parse(
        r#"{"temperature": null, "top_p": null, "stop": null, "model": "x", "messages": []}"#,
    )
    .unwrap();
    assert_eq!(p, SamplingParams::default());
}

#[test]
fn openai_shapes_parse() {
    let p = parse(
        r#"{"temperature": 0, "top_k": -1, "stop": "END", "logit_bias": {"50256": -100},
            "max_completion_tokens": 7, "seed": 42, "logprobs": 3}"#,
    )
    .unwrap();
    assert_eq!(p.temperature, 0.0);
    assert!(p.is_greedy());
    assert_eq!(p.top_k, 0);
    assert_eq!(p.stop, vec!["END".to_string()]);
    assert_eq!(p.logit_bias.get(&50256), Some(&-100.0));
    assert_eq!(
        (p.max_tokens, p.seed, p.logprobs),
        (Some(7), Some(42), Some(3))
    );
    let p = parse(r#"{"stop": ["a", "b"], "top_k": 5}"#).unwrap();
    assert_eq!(p.stop, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(p.top_k, 5);
    assert!(parse(r#"{"top_k": -2}"#).is_err());
}

#[test]
fn out_of_range_values_are_rejected_with_the_field_name() {
    let cases: Vec<(&str, SamplingParams)> = vec![
        (
            "temperature",
            SamplingParams {
                temperature: -0.1,
                ..Default::default()
            },
        ),
        (
            "temperature",
            SamplingParams {
                temperature: 2.01,
                ..Default::default()
            },
        ),
        (
            "temperature",
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
        ),
        (
            "top_p",
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
        ),
        (
            "top_p",
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            },
        ),
        (
            "min_p",
            SamplingParams {
                min_p: -0.5,
                ..Default::default()
            },
        ),
        (
            "min_p",
            SamplingParams {
                min_p: 1.01,
                ..Default::default()
            },
        ),
        (
            "repetition_penalty",
            SamplingParams {
                repetition_penalty: 0.0,
                ..Default::default()
            },
        ),
        (
            "presence_penalty",
            SamplingParams {
                presence_penalty: 2.5,
                ..Default::default()
            },
        ),
        (
            "frequency_penalty",
            SamplingParams {
                frequency_penalty: -3.0,
                ..Default::default()
            },
        ),
        (
            "logit_bias",
            SamplingParams {
                logit_bias: [(3, 101.0)].into(),
                ..Default::default()
            },
        ),
        (
            "max_tokens",
            SamplingParams {
                max_tokens: Some(0),
                ..Default::default()
            },
        ),
        (
            "stop",
            SamplingParams {
                stop: vec![String::new()],
                ..Default::default()
            },
        ),
        (
            "logprobs",
            SamplingParams {
                logprobs: Some(21),
                ..Default::default()
            },
        ),
        (
            "n",
            SamplingParams {
                n: 0,
                ..Default::default()
            },
        ),
        (
            "n",
            SamplingParams {
                n: MAX_N + 1,
                ..Default::default()
            },
        ),
        (
            "stop",
            SamplingParams {
                stop: vec!["x".into(); MAX_STOP_STRINGS + 1],
                ..Default::default()
            },
        ),
        (
            "stop",
            SamplingParams {
                stop: vec!["x".repeat(MAX_STOP_BYTES + 1)],
                ..Default::default()
            },
        ),
    ];
    for (field, p) in cases {
        match p.validate() {
            Err(ParamError::OutOfRange { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected an error, got {other:?}"),
        }
    }
    let edges = SamplingParams {
        temperature: 2.0,
        top_p: 1.0,
        min_p: 1.0,
        presence_penalty: -2.0,
        logit_bias: [(1, -100.0), (2, 100.0)].into(),
        logprobs: Some(20),
        n: MAX_N,
        stop: vec!["x".repeat(MAX_STOP_BYTES); MAX_STOP_STRINGS],
        ..Default::default()
    };
    assert_eq!(edges.validate(), Ok(()));
}

#[test]
fn token_ids_are_checked_against_the_vocabulary() {
    let p = SamplingParams {
        stop_token_ids: vec![5, 10],
        ..Default::default()
    };
    assert_eq!(p.validate_vocab(11), Ok(()));
    assert_eq!(
        p.validate_vocab(10),
        Err(ParamError::TokenOutOfVocab {
            field: "stop_token_ids",
            token: 10,
            vocab_size: 10
        })
    );
    let p = SamplingParams {
        logit_bias: [(99, 1.0)].into(),
        ..Default::default()
    };
    assert!(matches!(
        p.validate_vocab(50),
        Err(ParamError::TokenOutOfVocab {
            field: "logit_bias",
            ..
        })
    ));
}
