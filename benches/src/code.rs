//! A seeded synthetic source file for the edit workload: Python-like module constants and
//! small functions that call each other, the kind of code a small coder model reproduces
//! faithfully, kept as lines so that requested changes can be applied to it exactly.

use crate::rng::Rng;

/// Verbs and nouns of identifiers: common, so that each is one or two tokens in code
/// vocabularies. Function names are `verb_noun`, parameters and locals nouns, constants
/// `NOUN_NOUN`.
const VERBS: &[&str] = &[
    "load", "save", "read", "write", "parse", "check", "build", "send", "find", "update", "merge",
    "split", "sort", "format", "open", "close", "start", "stop", "fetch", "store", "clean",
    "score", "group", "filter", "render", "apply", "reset", "scan", "pack", "copy",
];
const NOUNS: &[&str] = &[
    "config", "path", "data", "user", "item", "record", "table", "row", "node", "cache", "result",
    "value", "index", "key", "name", "size", "limit", "total", "buffer", "line", "entry", "token",
    "event", "batch", "queue", "score", "page", "field", "state", "offset", "header", "block",
    "chunk", "delta", "weight", "label", "target", "source", "count", "step",
];

const INDENT: &str = "    ";

/// A source file as its lines (no trailing newlines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub lines: Vec<String>,
}

impl SourceFile {
    /// About `tokens` tokens by [`estimate_code_tokens`] (never less, rarely a line more):
    /// a few constants, then functions until the budget is spent.
    pub fn generate(rng: &mut Rng, tokens: usize) -> SourceFile {
        let mut file = SourceFile { lines: Vec::new() };
        let constants = rng.range(2, 4);
        let mut const_names = Vec::new();
        while const_names.len() < constants {
            let name = format!("{}_{}", pick(rng, NOUNS), pick(rng, NOUNS)).to_uppercase();
            if !const_names.contains(&name) {
                file.lines.push(format!("{name} = {}", rng.range(2, 99)));
                const_names.push(name);
            }
        }
        // Each function so far with its number of parameters, for calls.
        let mut functions: Vec<(String, usize)> = Vec::new();
        while file.tokens() < tokens {
            let name = loop {
                let n = format!("{}_{}", pick(rng, VERBS), pick(rng, NOUNS));
                if !functions.iter().any(|(f, _)| *f == n) {
                    break n;
                }
            };
            file.lines.extend(["".to_string(), "".to_string()]);
            let body = Body::new(rng, &name, &functions, &const_names);
            body.write(rng, &mut file, tokens);
            let arity = body.params.len();
            functions.push((name, arity));
        }
        file
    }

    pub fn text(&self) -> String {
        let mut t = self.lines.join("\n");
        t.push('\n');
        t
    }

    pub fn tokens(&self) -> usize {
        estimate_code_tokens(&self.text())
    }

    /// The names of the functions defined, in order.
    pub fn functions(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("def ")?.split('(').next())
            .map(str::to_string)
            .collect()
    }

    /// The parameters of function `name`, if it is defined.
    pub fn params(&self, name: &str) -> Option<Vec<String>> {
        let def = &self.lines[self.def_line(name)?];
        let inside = def.split_once('(')?.1.split_once(')')?.0;
        Some(
            inside
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    /// Module constants and their values, in order.
    pub fn constants(&self) -> Vec<(String, u64)> {
        self.lines
            .iter()
            .filter_map(|l| {
                let (name, value) = l.split_once(" = ")?;
                let is_const =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                Some((name.to_string(), value.parse().ok().filter(|_| is_const)?))
            })
            .collect()
    }

    pub fn def_line(&self, function: &str) -> Option<usize> {
        let head = format!("def {function}(");
        self.lines.iter().position(|l| l.starts_with(&head))
    }

    /// The lines of function `name`: its `def` line up to the next top-level line.
    pub fn function_span(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let start = self.def_line(name)?;
        let end = (start + 1..self.lines.len())
            .find(|&i| !self.lines[i].is_empty() && !self.lines[i].starts_with(' '))
            .unwrap_or(self.lines.len());
        // The blank lines before the next definition are not the function's.
        let end = (start + 1..end)
            .rev()
            .find(|&i| !self.lines[i].is_empty())
            .map_or(start + 1, |i| i + 1);
        Some(start..end)
    }

    /// Whether `word` occurs as a whole identifier anywhere in the file.
    pub fn mentions(&self, word: &str) -> bool {
        self.lines.iter().any(|l| count_word(l, word) > 0)
    }
}

/// One function being written: its name, parameters and the variables it has defined.
struct Body<'a> {
    name: &'a str,
    params: Vec<&'static str>,
    earlier: &'a [(String, usize)],
    constants: &'a [String],
}

impl<'a> Body<'a> {
    fn new(
        rng: &mut Rng,
        name: &'a str,
        earlier: &'a [(String, usize)],
        constants: &'a [String],
    ) -> Self {
        let mut params = vec![pick(rng, NOUNS)];
        if rng.range(0, 1) == 1 {
            let second = pick(rng, NOUNS);
            if !params.contains(&second) {
                params.push(second);
            }
        }
        Body {
            name,
            params,
            earlier,
            constants,
        }
    }

    /// Writes the function: 2 to 5 statements and a return, stopping early once the file
    /// reaches `budget` tokens.
    fn write(&self, rng: &mut Rng, file: &mut SourceFile, budget: usize) {
        file.lines
            .push(format!("def {}({}):", self.name, self.params.join(", ")));
        let mut vars: Vec<&'static str> = self.params.clone();
        let mut written: Vec<String> = Vec::new();
        for _ in 0..rng.range(2, 5) {
            if file.tokens() + 6 >= budget {
                break;
            }
            let lines = self.statement(rng, &vars);
            // A repeated statement reads as a mistake a model might "fix".
            if written.contains(&lines[0]) {
                continue;
            }
            if let Some((defined, _)) = lines[0].split_once(" = ") {
                vars.extend(NOUNS.iter().find(|n| **n == defined));
            }
            written.push(lines[0].clone());
            file.lines
                .extend(lines.into_iter().map(|l| format!("{INDENT}{l}")));
        }
        file.lines
            .push(format!("{INDENT}return {}", vars[vars.len() - 1]));
    }

    /// One statement (its lines, unindented) over the variables defined so far.
    fn statement(&self, rng: &mut Rng, vars: &[&'static str]) -> Vec<String> {
        let fresh = loop {
            let n = pick(rng, NOUNS);
            if !vars.contains(&n) {
                break n;
            }
        };
        let var = vars[rng.range(0, vars.len() - 1)];
        let constant = &self.constants[rng.range(0, self.constants.len() - 1)];
        match rng.range(0, 6) {
            0 => vec![format!("{fresh} = {var} + {constant}")],
            1 if !self.earlier.is_empty() => {
                let (callee, arity) = &self.earlier[rng.range(0, self.earlier.len() - 1)];
                let args: Vec<&str> = (0..*arity)
                    .map(|_| vars[rng.range(0, vars.len() - 1)])
                    .collect();
                vec![format!("{fresh} = {callee}({})", args.join(", "))]
            }
            2 => vec![
                format!("if {var} > {constant}:"),
                format!("{INDENT}{var} = {constant}"),
            ],
            3 => vec![
                format!("{fresh} = []"),
                format!("for {} in range({var}):", single(fresh)),
                format!("{INDENT}{fresh}.append({} * {constant})", single(fresh)),
            ],
            4 => vec![format!("{fresh} = min({var}, {constant})")],
            5 => vec![format!("{fresh} = {var} * {}", rng.range(2, 9))],
            _ => vec![format!("{fresh} = len(str({var}))")],
        }
    }
}

/// A loop variable for `name`: its first letter, which no parameter or local uses.
fn single(name: &str) -> &str {
    &name[..1]
}

fn pick(rng: &mut Rng, words: &[&'static str]) -> &'static str {
    words[rng.range(0, words.len() - 1)]
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Occurrences of `word` in `line` as a whole identifier.
pub fn count_word(line: &str, word: &str) -> usize {
    line.match_indices(word)
        .filter(|&(i, _)| {
            let before = line[..i].chars().next_back();
            let after = line[i + word.len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        })
        .count()
}

/// `line` with every whole-identifier `from` replaced by `to`.
pub fn replace_word(line: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = 0;
    for (i, _) in line.match_indices(from) {
        let before = line[..i].chars().next_back();
        let after = line[i + from.len()..].chars().next();
        if i >= rest && !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            out.push_str(&line[rest..i]);
            out.push_str(to);
            rest = i + from.len();
        }
    }
    out.push_str(&line[rest..]);
    out
}

/// The bench's token estimate for code, as `text::estimate_tokens` is for prose: one per
/// word piece (letters, or digits, between underscores), one per punctuation mark and one
/// per line break. On these files Qwen2.5-Coder's tokenizer counts about 10% fewer
/// tokens and SmolLM2's about 15% more.
pub fn estimate_code_tokens(text: &str) -> usize {
    let mut tokens = 0;
    let mut prev: Option<char> = None;
    for c in text.chars() {
        let starts = match c {
            c if c.is_ascii_alphabetic() => !prev.is_some_and(|p| p.is_ascii_alphabetic()),
            c if c.is_ascii_digit() => !prev.is_some_and(|p| p.is_ascii_digit()),
            '_' | ' ' => false,
            '\n' => true,
            _ => true,
        };
        tokens += starts as usize;
        prev = Some(c);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_identifiers_only() {
        assert_eq!(count_word("load_path(path, paths)", "path"), 1);
        assert_eq!(
            replace_word("x = load_path(path) + path", "path", "file"),
            "x = load_path(file) + file"
        );
        assert_eq!(replace_word("aa a aa", "aa", "b"), "b a b");
    }

    #[test]
    fn generated_files_parse_back() {
        for seed in 0..20 {
            let f = SourceFile::generate(&mut Rng::new(seed), 300);
            let functions = f.functions();
            assert!(functions.len() >= 3, "{}", f.text());
            let mut unique = functions.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), functions.len());
            assert!((2..=4).contains(&f.constants().len()));
            for name in &functions {
                let params = f.params(name).unwrap();
                assert!(!params.is_empty() && params.len() <= 2);
                let span = f.function_span(name).unwrap();
                assert!(f.lines[span.end - 1].starts_with("    return "));
            }
            assert_eq!(f, SourceFile::generate(&mut Rng::new(seed), 300));
        }
    }

    #[test]
    fn code_token_estimate() {
        // def, load, config, (, path, ), :, newline, return, path, newline
        assert_eq!(
            estimate_code_tokens("def load_config(path):\n    return path\n"),
            11
        );
        assert_eq!(estimate_code_tokens("MAX_SIZE = 64"), 4);
    }
}
