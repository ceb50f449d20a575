//! A fast HTML tokenizer for the markup mail is made of.
//!
//! Finding links with lol_html costs most of a rewrite: it tokenizes every
//! tag fully and keeps an element stack. This lexer does only what the scan
//! needs (start and end tags with attribute positions, comments) with
//! `memchr` between tags, following the WHATWG tokenizer states the way
//! lol_html implements them (including its quirks, see `tag`).
//!
//! It is a fast path, not a second parser: on anything outside what it
//! models exactly (foreign content, `<select>`, `<frameset>`, `<plaintext>`,
//! `<!--` inside a script, NUL bytes) it returns [`Unsupported`] and the
//! scan falls back to lol_html. `tests/html_lexer.rs` checks over the corpus
//! and generated markup that both find the same things.

use std::ops::Range;

use memchr::{memchr, memmem};

/// Why a document goes to lol_html instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// `<svg>` or `<math>`: foreign content has its own rules (CDATA,
    /// integration points).
    ForeignContent,
    /// `<select>` or `<frameset>`: lol_html may refuse such a document.
    Ambiguous,
    /// `<plaintext>`: everything after it is text.
    Plaintext,
    /// `<!--` inside a `<script>`: script data escape states.
    EscapedScript,
    /// A NUL byte anywhere.
    Nul,
    /// A raw text element's start tag ending in `name=>`, which lol_html
    /// reads in ways of its own.
    MissingValue,
}

/// One attribute of a tag: byte ranges in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: Range<usize>,
    /// The value without its quotes; `None` for `name` alone (or `name=>`).
    pub value: Option<Range<usize>>,
}

/// What the lexer reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Token<'l> {
    /// A start tag; `attrs` is filled only when the caller asked for it.
    Start {
        name: Range<usize>,
        range: Range<usize>,
        attrs: &'l [Attr],
    },
    End {
        name: Range<usize>,
        range: Range<usize>,
    },
    /// A `<!--…-->` comment, terminated (bogus comments and doctypes are
    /// skipped: nothing we look for is in them).
    Comment { range: Range<usize> },
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Data,
    /// RAWTEXT or RCDATA: text up to `</name`.
    Text(&'static [u8]),
    Script,
}

pub struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
    mode: Mode,
    attrs: Vec<Attr>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | b'\x0C')
}

impl<'a> Lexer<'a> {
    pub fn new(input: &'a [u8]) -> Result<Self, Unsupported> {
        if memchr(0, input).is_some() {
            return Err(Unsupported::Nul);
        }
        Ok(Self {
            input,
            pos: 0,
            mode: Mode::Data,
            attrs: Vec::new(),
        })
    }

    /// The next token; `want_attrs(name)` says whether to collect the
    /// attributes of a start tag with that (raw) name.
    ///
    /// One function on purpose: this loop runs for every `<` of every HTML
    /// part, and split into helpers (what `too_many_lines` asks) the
    /// rewrite executed 5% more instructions (callgrind, corpus HTML
    /// workload of `benches/rewrite.rs`; docs/benchmarks.md, issue 15).
    #[allow(clippy::too_many_lines)]
    pub fn next_token(
        &mut self,
        want_attrs: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Token<'_>>, Unsupported> {
        let input = self.input;
        loop {
            if let Mode::Text(_) | Mode::Script = self.mode {
                let name: &[u8] = match self.mode {
                    Mode::Text(name) => name,
                    _ => b"script",
                };
                let Some(at) = find_end_tag(input, self.pos, name) else {
                    return Ok(self.finish());
                };
                if matches!(self.mode, Mode::Script)
                    && memmem::find(&input[self.pos..at], b"<!--").is_some()
                {
                    return Err(Unsupported::EscapedScript);
                }
                self.mode = Mode::Data;
                self.pos = at;
            }
            let Some(lt) = memchr(b'<', &input[self.pos..]).map(|i| self.pos + i) else {
                return Ok(self.finish());
            };
            let Some(&next) = input.get(lt + 1) else {
                return Ok(self.finish());
            };
            match next {
                b'!' => {
                    let rest = &input[lt + 2..];
                    if rest.starts_with(b"--") {
                        match comment_end(input, lt + 4) {
                            Some(end) => {
                                self.pos = end;
                                return Ok(Some(Token::Comment { range: lt..end }));
                            }
                            None => return Ok(self.finish()),
                        }
                    }
                    // Doctype, bogus comment (`<!x>`, `<![CDATA[…]>` in HTML):
                    // both end at the first `>`.
                    if !self.skip_past_gt(lt + 2) {
                        return Ok(self.finish());
                    }
                }
                b'/' => match input.get(lt + 2) {
                    Some(c) if c.is_ascii_alphabetic() => {
                        let Some((name, end)) = self.tag(lt + 2, false) else {
                            return Ok(self.finish());
                        };
                        self.pos = end;
                        return Ok(Some(Token::End {
                            name,
                            range: lt..end,
                        }));
                    }
                    Some(b'>') => self.pos = lt + 3,
                    Some(_) => {
                        if !self.skip_past_gt(lt + 2) {
                            return Ok(self.finish());
                        }
                    }
                    None => return Ok(self.finish()),
                },
                b'?' => {
                    if !self.skip_past_gt(lt + 1) {
                        return Ok(self.finish());
                    }
                }
                c if c.is_ascii_alphabetic() => {
                    let name_end = input[lt + 1..]
                        .iter()
                        .position(|&b| is_ws(b) || b == b'/' || b == b'>')
                        .map_or(input.len(), |i| lt + 1 + i);
                    let collect = want_attrs(&input[lt + 1..name_end]);
                    let Some((name, end)) = self.tag(lt + 1, collect) else {
                        return Ok(self.finish());
                    };
                    self.mode = text_mode(&input[name.clone()])?;
                    if !matches!(self.mode, Mode::Data) && input[..end].ends_with(b"=>") {
                        return Err(Unsupported::MissingValue);
                    }
                    self.pos = end;
                    if !collect {
                        self.attrs.clear();
                    }
                    return Ok(Some(Token::Start {
                        name,
                        range: lt..end,
                        attrs: &self.attrs,
                    }));
                }
                _ => self.pos = lt + 1,
            }
        }
    }

    fn finish(&mut self) -> Option<Token<'static>> {
        self.pos = self.input.len();
        None
    }

    /// Moves past the next `>` at or after `from`; false at the end.
    fn skip_past_gt(&mut self, from: usize) -> bool {
        match memchr(b'>', &self.input[from.min(self.input.len())..]) {
            Some(i) => {
                self.pos = from + i + 1;
                true
            }
            None => false,
        }
    }

    /// A tag whose name starts at `start`: its name and where it ends;
    /// `None` when the input ends inside it (the tag is then no token).
    /// Attributes go to `self.attrs` when `collect`.
    fn tag(&mut self, start: usize, collect: bool) -> Option<(Range<usize>, usize)> {
        let input = self.input;
        let len = input.len();
        self.attrs.clear();
        let mut i = start;
        while i < len && !is_ws(input[i]) && input[i] != b'/' && input[i] != b'>' {
            i += 1;
        }
        let name = start..i;
        loop {
            // Before attribute name.
            while i < len && is_ws(input[i]) {
                i += 1;
            }
            match *input.get(i)? {
                b'>' => return Some((name, i + 1)),
                b'/' => {
                    // Self-closing start tag state: `/>` ends, anything
                    // else is reconsumed as before an attribute name.
                    i += 1;
                    if *input.get(i)? == b'>' {
                        return Some((name, i + 1));
                    }
                    continue;
                }
                _ => {}
            }
            // Attribute name (a leading `=` belongs to it).
            let name_start = i;
            i += 1;
            while i < len && !is_ws(input[i]) && !matches!(input[i], b'/' | b'>' | b'=') {
                i += 1;
            }
            let attr_name = name_start..i;
            // After attribute name.
            while i < len && is_ws(input[i]) {
                i += 1;
            }
            if *input.get(i)? != b'=' {
                if collect {
                    self.attrs.push(Attr {
                        name: attr_name,
                        value: None,
                    });
                }
                continue;
            }
            i += 1;
            while i < len && is_ws(input[i]) {
                i += 1;
            }
            let value = match *input.get(i)? {
                quote @ (b'"' | b'\'') => {
                    let end = i + 1 + memchr(quote, &input[i + 1..])?;
                    let v = i + 1..end;
                    i = end + 1;
                    v
                }
                b'>' => {
                    if collect {
                        self.attrs.push(Attr {
                            name: attr_name,
                            value: None,
                        });
                    }
                    return Some((name, i + 1));
                }
                _ => {
                    let v0 = i;
                    while i < len && !is_ws(input[i]) && input[i] != b'>' {
                        i += 1;
                    }
                    if i == len {
                        return None;
                    }
                    v0..i
                }
            };
            if collect {
                self.attrs.push(Attr {
                    name: attr_name,
                    value: Some(value),
                });
            }
        }
    }
}

/// The text mode a start tag switches to (lol_html's tree builder
/// simulator), or why we hand the document over.
fn text_mode(name: &[u8]) -> Result<Mode, Unsupported> {
    // Candidates by length, so most tags cost one comparison or none.
    let candidates: &[&'static [u8]] = match name.len() {
        3 => &[b"xmp", b"svg"],
        4 => &[b"math"],
        5 => &[b"title", b"style"],
        6 => &[b"iframe", b"script", b"select"],
        7 => &[b"noembed"],
        8 => &[b"textarea", b"noframes", b"noscript", b"frameset"],
        9 => &[b"plaintext"],
        _ => return Ok(Mode::Data),
    };
    let Some(&tag) = candidates.iter().find(|c| c.eq_ignore_ascii_case(name)) else {
        return Ok(Mode::Data);
    };
    match tag {
        b"script" => Ok(Mode::Script),
        b"svg" | b"math" => Err(Unsupported::ForeignContent),
        b"select" | b"frameset" => Err(Unsupported::Ambiguous),
        b"plaintext" => Err(Unsupported::Plaintext),
        raw => Ok(Mode::Text(raw)),
    }
}

/// Where `</name` followed by whitespace, `/` or `>` starts (the end of a
/// raw text element), from `from` on.
fn find_end_tag(input: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let mut at = from;
    loop {
        let j = at + memmem::find(&input[at..], b"</")?;
        let name_end = j + 2 + name.len();
        if input
            .get(j + 2..name_end)
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && input
                .get(name_end)
                .is_some_and(|&b| is_ws(b) || b == b'/' || b == b'>')
        {
            return Some(j);
        }
        at = j + 2;
    }
}

/// The end of a comment whose text starts at `text` (after `<!--`), as the
/// comment states read it: `<!-->`, `<!--->`, or the first `>` after `--`
/// or `--!` (dashes of the text, including a nested `<!--`).
fn comment_end(input: &[u8], text: usize) -> Option<usize> {
    match input.get(text..) {
        Some([b'>', ..]) => return Some(text + 1),
        Some([b'-', b'>', ..]) => return Some(text + 2),
        None => return None,
        _ => {}
    }
    let mut from = text;
    loop {
        let j = from + memchr(b'>', &input[from..])?;
        if (j >= text + 2 && &input[j - 2..j] == b"--")
            || (j >= text + 3 && &input[j - 3..j] == b"--!")
        {
            return Some(j + 1);
        }
        from = j + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(html: &str) -> Result<Vec<String>, Unsupported> {
        let mut lexer = Lexer::new(html.as_bytes())?;
        let mut out = Vec::new();
        while let Some(t) = lexer.next_token(|_| true)? {
            out.push(match t {
                Token::Start { name, attrs, .. } => {
                    let attrs: Vec<String> = attrs
                        .iter()
                        .map(|a| {
                            let v = a.value.clone().map(|v| &html[v]);
                            format!("{}={v:?}", &html[a.name.clone()])
                        })
                        .collect();
                    format!("<{} {}>", &html[name], attrs.join(" "))
                }
                Token::End { name, .. } => format!("</{}>", &html[name]),
                Token::Comment { range } => html[range].to_string(),
            });
        }
        Ok(out)
    }

    #[test]
    fn tags_attributes_and_quoting() {
        assert_eq!(
            tokens("<a href=\"x>y\" b='1' c=2 d e = f/><P/>x</a >").unwrap(),
            [
                "<a href=Some(\"x>y\") b=Some(\"1\") c=Some(\"2\") d=None e=Some(\"f/\")>",
                "<P >",
                "</a>"
            ]
        );
        assert_eq!(
            tokens("<a x=\"1\"title=t =y>").unwrap(),
            ["<a x=Some(\"1\") title=Some(\"t\") =y=None>"]
        );
        // A tag the input ends inside is no tag.
        assert_eq!(tokens("<p>x<a href=\"y").unwrap(), ["<p >"]);
    }

    #[test]
    fn comments_doctypes_and_bogus_comments() {
        assert_eq!(
            tokens("<!DOCTYPE html><!-- <a> --><?x <b>?><!x <c>><!--><!---><!-- x --!><i>")
                .unwrap(),
            ["<!-- <a> -->", "<!-->", "<!--->", "<!-- x --!>", "<i >"]
        );
        assert_eq!(tokens("</ x><b></>").unwrap(), ["<b >"]);
        assert_eq!(
            tokens("<!-- never closed <a>").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn raw_text_elements_hide_tags() {
        assert_eq!(
            tokens("<style>a</b><a href=x></STYLE ><title><a></title><script>if(a<b)</script><a>")
                .unwrap(),
            [
                "<style >",
                "</STYLE>",
                "<title >",
                "</title>",
                "<script >",
                "</script>",
                "<a >"
            ]
        );
        assert_eq!(tokens("<style x=><a>"), Err(Unsupported::MissingValue));
    }

    #[test]
    fn what_it_does_not_model_is_handed_over() {
        assert_eq!(tokens("<svg><a/>"), Err(Unsupported::ForeignContent));
        assert_eq!(tokens("<select>"), Err(Unsupported::Ambiguous));
        assert_eq!(tokens("<plaintext>"), Err(Unsupported::Plaintext));
        assert_eq!(
            tokens("<script><!-- </script> --></script>"),
            Err(Unsupported::EscapedScript)
        );
        assert_eq!(tokens("a\0b"), Err(Unsupported::Nul));
    }
}
