//! Templates and rules of a bridge as typed handles (docs/configuration.md#templates): a sink's
//! `template` or chat `message` is compiled into the bridge's [`Engine`] under a name and is
//! rendered by that name; a rule (`emit.when`, `sinks[N].when`, docs/configuration.md#rules) is
//! checked at load and kept as its text, compiled again where it runs. A [`TemplateRef`] can only
//! be rendered and a [`RuleRef`] only tested, so the one is never taken for the other.

use super::Validator;
use crate::chat::Receiver;
use crate::config::Problem;
use crate::render::{Context, Engine, Located};

/// A template or chat message compiled into the bridge's engine ([`super::Bridge::render`]):
/// the name it is kept under there (its place in the file, `sinks[0].template`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRef(String);

impl TemplateRef {
    /// Renders it from `ctx`; the error is one line, fit for a dead letter.
    pub fn render(&self, engine: &Engine, ctx: &Context) -> Result<String, String> {
        engine.render(&self.0, ctx)
    }
}

/// A rule checked at load: its text as written (an expression, compiled where it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef(String);

impl RuleRef {
    /// Whether it holds for `ctx`; an error is the rule failing at run time (the caller decides
    /// what that means: it counts as true, docs/configuration.md#rules).
    pub fn test(&self, engine: &Engine, ctx: &Context) -> Result<bool, String> {
        engine.test(&self.0, ctx)
    }
}

impl Validator<'_> {
    /// A `template` as written (never interpolated: `${` means nothing to MiniJinja, and a
    /// secret in a body belongs in a header), compiled under its `path`; a syntax error is
    /// placed inside the text.
    pub(super) fn template(&mut self, path: &str, source: &str) -> Option<TemplateRef> {
        let checked = self.templates.template(path, source);
        self.compiled(path, checked)
            .then(|| TemplateRef(path.to_string()))
    }

    /// A chat `message`, compiled under its `path` with every value it prints escaped for `to`;
    /// placed like [`Self::template`].
    pub(super) fn message(
        &mut self,
        path: &str,
        source: &str,
        to: Receiver,
    ) -> Option<TemplateRef> {
        let checked = self.templates.message(path, source, to);
        self.compiled(path, checked)
            .then(|| TemplateRef(path.to_string()))
    }

    /// A rule as written (never interpolated, like a template), checked; kept as its text.
    pub(super) fn rule(&mut self, path: &str, source: &str) -> Option<RuleRef> {
        let checked = self.templates.rule(source);
        self.compiled(path, checked)
            .then(|| RuleRef(source.to_string()))
    }

    /// Whether the template or rule at `path` compiled; if not, the problem is recorded at its
    /// place inside the text.
    fn compiled(&mut self, path: &str, checked: Result<(), Located>) -> bool {
        match checked {
            Ok(()) => true,
            Err(e) => {
                self.problems.push(Problem {
                    file: self.file.to_path_buf(),
                    pos: self.loc.inside(path, e.line, e.column),
                    message: format!("{path}: {}", e.message),
                });
                false
            }
        }
    }
}
