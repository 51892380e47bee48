//! The `tojson` filter as HF transformers defines it for chat templates:
//! `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`.
//!
//! It differs from minijinja's built-in (compact, HTML-escaped) in ways that change the
//! prompt: `", "` / `": "` separators, raw non-ASCII, Python's float spelling.

use std::fmt::Write;

use minijinja::value::{Kwargs, Value};
use minijinja::{Error, ErrorKind};
use serde_json::Value as Json;

struct Style {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// `value | tojson(indent=None, ensure_ascii=False, separators=None, sort_keys=False)`;
/// `indent` may also be passed positionally.
pub(crate) fn tojson(value: Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(usize::try_from(v)?)),
        },
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let (item_sep, key_sep) = match separators {
        Some(seps) if seps.len() == 2 => (seps[0].clone(), seps[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = Style {
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            "cannot serialize value to JSON",
        )
        .with_source(e)
    })?;
    let mut out = String::new();
    write_value(&mut out, &json, &style, 0);
    Ok(Value::from_safe_string(out))
}

fn write_value(out: &mut String, v: &Json, style: &Style, depth: usize) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&python_number(n)),
        Json::String(s) => write_string(out, s, style.ensure_ascii),
        Json::Array(items) => write_container(
            out,
            '[',
            ']',
            items.iter().map(|v| (None, v)),
            items.is_empty(),
            style,
            depth,
        ),
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            let empty = entries.is_empty();
            let items = entries.into_iter().map(|(k, v)| (Some(k.as_str()), v));
            write_container(out, '{', '}', items, empty, style, depth)
        }
    }
}

fn write_container<'a>(
    out: &mut String,
    open: char,
    close: char,
    items: impl Iterator<Item = (Option<&'a str>, &'a Json)>,
    empty: bool,
    style: &Style,
    depth: usize,
) {
    out.push(open);
    if empty {
        out.push(close);
        return;
    }
    for (i, (key, value)) in items.enumerate() {
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        newline_indent(out, style, depth + 1);
        if let Some(key) = key {
            write_string(out, key, style.ensure_ascii);
            out.push_str(&style.key_sep);
        }
        write_value(out, value, style, depth + 1);
    }
    newline_indent(out, style, depth);
    out.push(close);
}

fn newline_indent(out: &mut String, style: &Style, depth: usize) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    }
}

/// JSON string escaping as Python's json module does it: the same short escapes as
/// serde_json, `\uXXXX` (UTF-16) for everything non-ASCII when `ensure_ascii`.
fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    let escaped = serde_json::to_string(s).expect("strings always serialize");
    if !ensure_ascii || escaped.is_ascii() {
        out.push_str(&escaped);
        return;
    }
    for c in escaped.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
}

/// Python's `repr` of a number: integers as is; floats like serde_json except that the
/// exponent has a sign and at least two digits (`1e+16`, `1e-05`).
fn python_number(n: &serde_json::Number) -> String {
    let s = n.to_string();
    if !n.is_f64() {
        return s;
    }
    if let Some((mantissa, exp)) = s.split_once('e') {
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp.strip_prefix('+').unwrap_or(exp)),
        };
        // Python writes 1e+16, not 1.0e+16.
        let mantissa = mantissa.strip_suffix(".0").unwrap_or(mantissa);
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(json: &str, kwargs: Vec<(&str, Value)>) -> String {
        let value = Value::from(minijinja::value::Serde(
            serde_json::from_str::<Json>(json).unwrap(),
        ));
        let kwargs = Kwargs::from_iter(kwargs);
        tojson(value, None, kwargs).unwrap().to_string()
    }

    #[test]
    fn matches_python_json_dumps_spacing_and_order() {
        assert_eq!(
            dumps(r#"{"b": 1, "a": [1, 2.5, "x"], "c": {}}"#, vec![]),
            r#"{"b": 1, "a": [1, 2.5, "x"], "c": {}}"#
        );
    }

    #[test]
    fn keeps_non_ascii_and_escapes_controls() {
        assert_eq!(
            dumps(r#""héllo 👋 <b>\n\"""#, vec![]),
            r#""héllo 👋 <b>\n\"""#
        );
        assert_eq!(
            dumps(r#""é👋""#, vec![("ensure_ascii", Value::from(true))]),
            r#""\u00e9\ud83d\udc4b""#
        );
    }

    #[test]
    fn indent_and_sort_keys() {
        assert_eq!(
            dumps(
                r#"{"b": [1], "a": null}"#,
                vec![("indent", Value::from(2)), ("sort_keys", Value::from(true))]
            ),
            "{\n  \"a\": null,\n  \"b\": [\n    1\n  ]\n}"
        );
    }

    #[test]
    fn floats_spelled_like_python() {
        assert_eq!(
            dumps("[1e16, 1.5e-7, 0.1, 3.0]", vec![]),
            "[1e+16, 1.5e-07, 0.1, 3.0]"
        );
    }
}
