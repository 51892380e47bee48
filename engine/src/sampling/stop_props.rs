//! Property tests: streaming through [`StopChecker`] equals the obvious non-streamed
//! computation (stop on the whole text at once), for any split of the text into tokens.

use proptest::prelude::*;

use super::*;

const EOS: u32 = 2;
const TEXT: u32 = 100;

/// The non-streamed answer: final text and reason, from the whole token list at once.
fn oracle(
    tokens: &[(u32, String)],
    stops: &[String],
    include: bool,
    max: Option<usize>,
) -> (String, Option<StopReason>) {
    let fed = tokens
        .iter()
        .position(|t| t.0 == EOS)
        .map_or(tokens.len(), |i| i + 1)
        .min(max.unwrap_or(usize::MAX));
    let full: String = tokens[..fed]
        .iter()
        .filter(|t| t.0 != EOS)
        .map(|t| t.1.as_str())
        .collect();
    // The stop string whose end comes first; the longer one on a tie.
    let best = stops
        .iter()
        .filter_map(|s| full.find(s.as_str()).map(|i| (i + s.len(), i, s)))
        .min_by_key(|&(end, start, _)| (end, start));
    if let Some((end, start, s)) = best {
        let cut = if include { end } else { start };
        return (
            full[..cut].to_string(),
            Some(StopReason::StopString(s.clone())),
        );
    }
    let reason = if fed > 0 && tokens[fed - 1].0 == EOS {
        Some(StopReason::Eos)
    } else if Some(fed) == max {
        Some(StopReason::Length)
    } else {
        None
    };
    (full, reason)
}

/// Streams the tokens; returns each emitted delta and the reason it stopped (if it did).
fn stream(c: &mut StopChecker, tokens: &[(u32, String)]) -> (Vec<String>, Option<StopReason>) {
    let mut out = Vec::new();
    for (id, text) in tokens {
        let step = c.push(*id, text);
        out.push(step.text);
        if step.stop.is_some() {
            return (out, step.stop);
        }
    }
    // The caller ran out of tokens: flushing must release whatever was held.
    out.push(c.force_stop(StopReason::Length).text);
    (out, None)
}

fn token() -> impl Strategy<Value = (u32, String)> {
    // Small alphabet (with a 2-byte char) so stop strings and near-misses are frequent;
    // empty deltas stand for incomplete UTF-8.
    prop_oneof![1 => Just((EOS, "</s>".to_string())), 12 => "[abEND\u{e9}]{0,3}".prop_map(|s| (TEXT, s))]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn streaming_equals_the_whole_text_computation(
        tokens in prop::collection::vec(token(), 0..25),
        stops in prop::collection::vec("[abEND\u{e9}]{1,4}", 0..4),
        include in any::<bool>(),
        max in prop::option::of(1usize..30),
    ) {
        let params = SamplingParams {
            stop: stops.clone(),
            include_stop_str_in_output: include,
            max_tokens: max,
            ..Default::default()
        };
        let mut c = StopChecker::new(&params, &[EOS]);
        let (deltas, reason) = stream(&mut c, &tokens);
        let (want_text, want_reason) = oracle(&tokens, &stops, include, max);
        prop_assert_eq!(deltas.concat(), c.text());
        prop_assert_eq!(c.text(), want_text.as_str());
        prop_assert_eq!(reason, want_reason);
    }

    #[test]
    fn output_does_not_depend_on_token_boundaries(
        text in "[abEND\u{e9}]{0,40}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        stops in prop::collection::vec("[abEND\u{e9}]{1,4}", 1..4),
    ) {
        let bounds: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        let mut at: Vec<usize> = cuts.iter().map(|c| bounds[c.index(bounds.len())]).collect();
        at.push(0);
        at.push(text.len());
        at.sort();
        let split: Vec<(u32, String)> = at.windows(2).map(|w| (TEXT, text[w[0]..w[1]].to_string())).collect();
        let by_char: Vec<(u32, String)> = text.chars().map(|ch| (TEXT, ch.to_string())).collect();
        let params = SamplingParams { stop: stops, ..Default::default() };
        let run = |toks: &[(u32, String)]| {
            let mut c = StopChecker::new(&params, &[]);
            let (_, reason) = stream(&mut c, toks);
            (c.text().to_string(), reason)
        };
        prop_assert_eq!(run(&split), run(&by_char));
    }
}
