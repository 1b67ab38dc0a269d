//! Where each value of a YAML file stands, so that problems found after parsing (a bad
//! duration, a missing `${VAR}`, a duplicate name) can still be reported as `FILE:LINE:COLUMN`.
//!
//! serde_yaml only gives a position for the first error it meets; validation collects every
//! problem, so it needs its own map from a value's path (`sinks[0].url`) to its place.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Positions of the values (and of the keys) of one YAML document, by path.
#[derive(Debug, Default)]
pub struct Locator {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    /// Where the text of each string value starts, so that a place inside it (a template's
    /// syntax error) can be reported as a place in the file.
    texts: HashMap<String, TextStart>,
}

/// The first character of a scalar's text, and whether its lines stand on lines of their own
/// (a `|` or `>` block) at `column`.
#[derive(Debug, Clone, Copy)]
struct TextStart {
    pos: Pos,
    block: bool,
}

impl Locator {
    /// Builds the map; a document that does not parse gives an empty one (serde_yaml reports
    /// the syntax error with its own position).
    pub fn new(text: &str) -> Self {
        let mut recv = Recv {
            loc: Locator::default(),
            stack: Vec::new(),
        };
        let _ = Parser::new_from_str(text).load(&mut recv, false);
        recv.loc
    }

    /// The place in the file of `line`:`column` (1-based) of the text of the string value at
    /// `path`; exact for plain, quoted and `|` text, close for `>` and escapes.
    pub fn inside(&self, path: &str, line: usize, column: usize) -> Option<Pos> {
        let Some(t) = self.texts.get(path) else {
            return self.value(path);
        };
        Some(match (line, t.block) {
            (0 | 1, _) => Pos {
                line: t.pos.line,
                column: t.pos.column + column.saturating_sub(1),
            },
            (l, true) => Pos {
                line: t.pos.line + l - 1,
                column: t.pos.column + column.saturating_sub(1),
            },
            (l, false) => Pos {
                line: t.pos.line + l - 1,
                column,
            },
        })
    }

    /// The position of the value at `path`, else of the nearest enclosing value that has one.
    pub fn value(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return Some(*pos);
            }
            p = parent(p)?;
        }
    }

    /// The position of the key that names `path` (`schedule.every` -> where `every:` stands).
    #[cfg(test)]
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    match path.rfind(['.', '[']) {
        Some(i) => Some(&path[..i]),
        None => Some(""),
    }
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

struct Recv {
    loc: Locator,
    stack: Vec<Frame>,
}

impl Recv {
    /// The path of the value that starts now, or None when the event is a mapping key.
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key }) => {
                let k = key.take().unwrap_or_default();
                Some(child(path, &k))
            }
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }
}

fn pos(mark: Marker) -> Pos {
    Pos {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Recv {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, ..) => match self.value_path() {
                Some(path) => {
                    let quoted = matches!(
                        style,
                        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                    );
                    let block = matches!(style, TScalarStyle::Literal | TScalarStyle::Folded);
                    let mut start = pos(mark);
                    start.column += usize::from(quoted);
                    if block {
                        // A block's mark is its first non-blank line; blank lines before it
                        // are lines of its text.
                        let blank = text.chars().take_while(|c| *c == '\n').count();
                        start.line = start.line.saturating_sub(blank);
                    }
                    self.loc
                        .texts
                        .insert(path.clone(), TextStart { pos: start, block });
                    self.loc.values.insert(path, pos(mark));
                }
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        self.loc.keys.insert(child(path, &text), pos(mark));
                        *key = Some(text);
                    }
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.loc.values.insert(path.clone(), pos(mark));
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.value_path();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_keys_and_falls_back_to_parents() {
        let text = "name: a\nschedule:\n  every: 5m\nsinks:\n  - url: console\n  - {url: x, timeout: 3s}\n";
        let loc = Locator::new(text);
        assert_eq!(loc.value("name"), Some(Pos { line: 1, column: 7 }));
        assert_eq!(
            loc.value("schedule.every"),
            Some(Pos {
                line: 3,
                column: 10
            })
        );
        assert_eq!(loc.key("schedule.every"), Some(Pos { line: 3, column: 3 }));
        assert_eq!(
            loc.value("sinks[0].url"),
            Some(Pos {
                line: 5,
                column: 10
            })
        );
        assert_eq!(
            loc.value("sinks[1].timeout"),
            Some(Pos {
                line: 6,
                column: 23
            })
        );
        assert_eq!(loc.value("sinks[1].headers.x"), loc.value("sinks[1]"));
    }

    #[test]
    fn places_inside_text() {
        let text = "a: \"{{ x }}\"\nb: |\n\n    one\n    two {{\nc: plain {{ y\n";
        let loc = Locator::new(text);
        assert_eq!(loc.inside("a", 1, 4), Some(Pos { line: 1, column: 8 }));
        // The block's text is "\none\ntwo {{": its line 3 is the file's line 5.
        assert_eq!(loc.inside("b", 3, 5), Some(Pos { line: 5, column: 9 }));
        assert_eq!(
            loc.inside("c", 1, 7),
            Some(Pos {
                line: 6,
                column: 10
            })
        );
    }
}
