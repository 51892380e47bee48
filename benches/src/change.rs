//! The small changes an edit-workload agent asks for, each drawn against the file as it
//! stands after the earlier ones (so each names something the file has), with the
//! instruction sent to the model and the exact edit it asks for.

use crate::code::{replace_word, SourceFile};
use crate::rng::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A function and every call to it.
    RenameFunction {
        from: String,
        to: String,
    },
    /// A parameter, inside its function only.
    RenameParam {
        function: String,
        from: String,
        to: String,
    },
    SetConstant {
        name: String,
        from: u64,
        to: u64,
    },
    /// A line inserted as the first statement of a function.
    AddLine {
        function: String,
        line: String,
    },
}

impl Change {
    /// A change that applies to `file`, or None for a file with no function.
    pub fn draw(rng: &mut Rng, file: &SourceFile) -> Option<Change> {
        let functions = file.functions();
        let function = functions.get(rng.range(0, functions.len().checked_sub(1)?))?;
        let constants = file.constants();
        Some(match rng.range(0, 3) {
            0 => Change::RenameFunction {
                from: function.clone(),
                to: fresh_name(rng, file, |rng| {
                    format!("{}_{}", word(rng, RENAME_VERBS), function_noun(function))
                }),
            },
            1 => {
                let params = file.params(function)?;
                let from = params[rng.range(0, params.len() - 1)].clone();
                Change::RenameParam {
                    function: function.clone(),
                    to: fresh_name(rng, file, |rng| format!("{}_{from}", word(rng, ADJECTIVES))),
                    from,
                }
            }
            2 if !constants.is_empty() => {
                let (name, from) = constants[rng.range(0, constants.len() - 1)].clone();
                let to = loop {
                    let v = rng.range(2, 999) as u64;
                    if v != from {
                        break v;
                    }
                };
                Change::SetConstant { name, from, to }
            }
            _ => {
                let params = file.params(function)?;
                let p = &params[rng.range(0, params.len() - 1)];
                let line = match rng.range(0, 2) {
                    0 => format!("assert {p} is not None"),
                    1 => format!("print({p})"),
                    _ => format!("{p} = {p} or 0"),
                };
                Change::AddLine {
                    function: function.clone(),
                    line,
                }
            }
        })
    }

    /// The user's instruction for this change.
    pub fn instruction(&self) -> String {
        match self {
            Change::RenameFunction { from, to } => {
                format!("rename the function `{from}` to `{to}`, and every call to it.")
            }
            Change::RenameParam { function, from, to } => format!(
                "in the function `{function}`, rename the parameter `{from}` to `{to}` everywhere it is used."
            ),
            Change::SetConstant { name, from, to } => {
                format!("change the constant `{name}` from {from} to {to}.")
            }
            Change::AddLine { function, line } => {
                format!("add the line `{line}` as the first line of the body of `{function}`.")
            }
        }
    }

    /// Whether what the change names is in `file`.
    pub fn applies_to(&self, file: &SourceFile) -> bool {
        match self {
            Change::RenameFunction { from, to } => {
                file.def_line(from).is_some() && !file.mentions(to)
            }
            Change::RenameParam { function, from, to } => {
                file.params(function).is_some_and(|p| p.contains(from)) && !file.mentions(to)
            }
            Change::SetConstant { name, from, .. } => {
                file.constants().contains(&(name.clone(), *from))
            }
            Change::AddLine { function, .. } => file.def_line(function).is_some(),
        }
    }

    /// `file` with the change made, as the model is asked to make it.
    pub fn apply(&self, file: &mut SourceFile) {
        match self {
            Change::RenameFunction { from, to } => {
                for l in &mut file.lines {
                    *l = replace_word(l, from, to);
                }
            }
            Change::RenameParam { function, from, to } => {
                if let Some(span) = file.function_span(function) {
                    for l in &mut file.lines[span] {
                        *l = replace_word(l, from, to);
                    }
                }
            }
            Change::SetConstant { name, from, to } => {
                let old = format!("{name} = {from}");
                if let Some(l) = file.lines.iter_mut().find(|l| **l == old) {
                    *l = format!("{name} = {to}");
                }
            }
            Change::AddLine { function, line } => {
                if let Some(at) = file.def_line(function) {
                    file.lines.insert(at + 1, format!("    {line}"));
                }
            }
        }
    }
}

const RENAME_VERBS: &[&str] = &[
    "get", "make", "compute", "handle", "process", "prepare", "collect", "resolve", "emit",
    "refresh",
];
const ADJECTIVES: &[&str] = &[
    "new", "raw", "base", "max", "min", "next", "prev", "first", "last", "input",
];

fn word(rng: &mut Rng, words: &[&'static str]) -> &'static str {
    words[rng.range(0, words.len() - 1)]
}

/// The noun of a `verb_noun` function name (the whole name if it has no underscore).
fn function_noun(name: &str) -> &str {
    name.split_once('_').map_or(name, |(_, noun)| noun)
}

/// A name from `make` that the file does not mention yet; a numbered one if the draws keep
/// colliding.
fn fresh_name(rng: &mut Rng, file: &SourceFile, make: impl Fn(&mut Rng) -> String) -> String {
    for _ in 0..32 {
        let name = make(rng);
        if !file.mentions(&name) {
            return name;
        }
    }
    let base = make(rng);
    (2..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !file.mentions(n))
        .expect("some number is free")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::count_word;

    fn file() -> SourceFile {
        let text = "LIMIT_SIZE = 8\n\n\ndef load_path(path, size):\n    total = path + LIMIT_SIZE\n    return total\n\n\ndef save_path(path):\n    data = load_path(path)\n    return data";
        SourceFile {
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    fn occurrences(f: &SourceFile, word: &str) -> usize {
        f.lines.iter().map(|l| count_word(l, word)).sum()
    }

    #[test]
    fn changes_do_what_they_say() {
        let mut f = file();
        let rename = Change::RenameFunction {
            from: "load_path".into(),
            to: "get_path".into(),
        };
        assert!(rename.applies_to(&f));
        rename.apply(&mut f);
        assert_eq!(
            (occurrences(&f, "load_path"), occurrences(&f, "get_path")),
            (0, 2)
        );
        assert!(!rename.applies_to(&f));

        let param = Change::RenameParam {
            function: "get_path".into(),
            from: "path".into(),
            to: "raw_path".into(),
        };
        assert!(param.applies_to(&f));
        param.apply(&mut f);
        assert_eq!(f.params("get_path").unwrap(), ["raw_path", "size"]);
        assert_eq!(f.lines[4], "    total = raw_path + LIMIT_SIZE");
        // The other function's parameter of the same name is left alone.
        assert_eq!(f.params("save_path").unwrap(), ["path"]);

        let constant = Change::SetConstant {
            name: "LIMIT_SIZE".into(),
            from: 8,
            to: 16,
        };
        assert!(constant.applies_to(&f));
        constant.apply(&mut f);
        assert_eq!(f.constants(), [("LIMIT_SIZE".to_string(), 16)]);

        let add = Change::AddLine {
            function: "save_path".into(),
            line: "print(path)".into(),
        };
        add.apply(&mut f);
        let at = f.def_line("save_path").unwrap();
        assert_eq!(f.lines[at + 1], "    print(path)");
        assert_eq!(f.function_span("save_path").unwrap(), at..at + 4);
    }

    #[test]
    fn drawn_changes_apply_and_vary() {
        let mut kinds = std::collections::HashSet::new();
        for seed in 0..40 {
            let f = SourceFile::generate(&mut Rng::new(seed), 300);
            let c = Change::draw(&mut Rng::new(seed), &f).unwrap();
            assert!(c.applies_to(&f), "{c:?}");
            kinds.insert(std::mem::discriminant(&c));
        }
        assert_eq!(kinds.len(), 4);
        let empty = SourceFile { lines: Vec::new() };
        assert_eq!(Change::draw(&mut Rng::new(1), &empty), None);
    }
}
