//! Reading a tool call while it is being written, so that its arguments can stream: the
//! opening `{"name": "…", "arguments": ` of a call object, then where the arguments
//! object ends. Anything this cannot follow (keys in another order, arguments given as
//! a string) is left to the whole-call parser in `tools`.

/// How much of a call object's opening has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Consistent with an opening so far: wait for more text.
    Partial,
    /// The function's name, and the byte offset where its arguments object starts.
    Found { name: String, args_at: usize },
    /// Not an opening that can stream.
    No,
}

/// Reads `{"name": "<name>", "arguments": {` (or `"parameters"`), JSON whitespace allowed
/// between the tokens, from the start of `text`.
pub fn head(text: &str) -> Head {
    let mut r = Reader { text, at: 0 };
    let read = |r: &mut Reader| -> Result<Head, Head> {
        r.literal("{")?;
        r.literal("\"name\"")?;
        r.literal(":")?;
        let name = r.string()?;
        r.literal(",")?;
        r.one_of(&["\"arguments\"", "\"parameters\""])?;
        r.literal(":")?;
        r.skip_ws();
        match r.rest().chars().next() {
            None => Err(Head::Partial),
            Some('{') => Ok(Head::Found {
                name,
                args_at: r.at,
            }),
            Some(_) => Err(Head::No),
        }
    };
    read(&mut r).unwrap_or_else(|h| h)
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r']).len();
    }

    /// Whitespace, then `lit`: read, cut short (`Partial`) or something else (`No`).
    fn literal(&mut self, lit: &str) -> Result<(), Head> {
        self.skip_ws();
        let rest = self.rest();
        if rest.starts_with(lit) {
            self.at += lit.len();
            Ok(())
        } else if lit.starts_with(rest) {
            Err(Head::Partial)
        } else {
            Err(Head::No)
        }
    }

    fn one_of(&mut self, lits: &[&str]) -> Result<(), Head> {
        let mut partial = false;
        for lit in lits {
            let at = self.at;
            match self.literal(lit) {
                Ok(()) => return Ok(()),
                Err(Head::Partial) => partial = true,
                Err(_) => {}
            }
            self.at = at;
        }
        Err(if partial { Head::Partial } else { Head::No })
    }

    /// A JSON string, unescaped.
    fn string(&mut self) -> Result<String, Head> {
        self.literal("\"")?;
        let start = self.at - 1;
        let mut escaped = false;
        for (i, b) in self.rest().bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    self.at += i + 1;
                    return serde_json::from_str(&self.text[start..self.at]).map_err(|_| Head::No);
                }
                _ => {}
            }
        }
        Err(Head::Partial)
    }
}

/// Where a JSON object ends in text that arrives in pieces. Structural characters are
/// ASCII, and no byte of a multi-byte UTF-8 character is ASCII, so bytes can be scanned.
#[derive(Debug, Default)]
pub struct ObjectEnd {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// All of the piece belongs to the object, which is still open.
    Open,
    /// The object closed: its last byte is the piece's byte at this offset minus one.
    Closed(usize),
    /// A `<` outside any string at this offset: no JSON holds one there, so the object
    /// was cut off (a closing tag written before the arguments closed).
    Broken(usize),
}

impl ObjectEnd {
    /// Scans the next piece of the object's text (its first piece starts with `{`).
    pub fn scan(&mut self, piece: &str) -> Scan {
        for (i, b) in piece.bytes().enumerate() {
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Scan::Closed(i + 1);
                    }
                }
                b'<' => return Scan::Broken(i),
                _ => {}
            }
        }
        Scan::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opening_is_read_however_it_is_cut() {
        let text = "\n{\"name\": \"get_weather\",\n \"arguments\": {\"city\": \"Paris\"}}";
        let args_at = text.find("{\"city").unwrap();
        for cut in 0..text.len() {
            let got = head(&text[..cut]);
            if cut <= args_at {
                assert_eq!(got, Head::Partial, "cut {cut}: {:?}", &text[..cut]);
            } else {
                assert_eq!(
                    got,
                    Head::Found {
                        name: "get_weather".into(),
                        args_at
                    },
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn openings_that_cannot_stream() {
        for text in [
            "{\"arguments\": {}, \"name\": \"x\"}",
            "{\"name\": \"x\", \"arguments\": \"{}\"}",
            "{\"name\": \"x\"}",
            "[{\"name\": \"x\"",
            "not json",
        ] {
            assert_eq!(head(text), Head::No, "{text}");
        }
        let escaped = "{\"name\":\"a\\\"b\",\"parameters\":{";
        assert_eq!(
            head(escaped),
            Head::Found {
                name: "a\"b".into(),
                args_at: escaped.len() - 1
            }
        );
    }

    #[test]
    fn the_end_of_an_object_is_found_across_pieces() {
        let mut e = ObjectEnd::default();
        assert_eq!(e.scan("{\"a\": \"}{<\\\""), Scan::Open);
        assert_eq!(e.scan("\", \"b\": [1, {\"c\": 2}]"), Scan::Open);
        assert_eq!(e.scan("}\n}"), Scan::Closed(1));
        let mut e = ObjectEnd::default();
        assert_eq!(e.scan("{\"a\": 1"), Scan::Open);
        assert_eq!(e.scan("</tool_call>"), Scan::Broken(0));
    }
}
