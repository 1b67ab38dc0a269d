//! `pollhook new`: ready bridge files for common sources (docs/operations.md#recipes). A
//! recipe is a template (a bridge file in `templates/`, with `{{slot}}`s) and a step that
//! checks its arguments and fills the slots; [`write`] puts the two together. Pure: no files,
//! no network.
//!
//! Arguments land in URLs and in YAML, so every slot is written as a double-quoted YAML
//! scalar ([`quote`]): an argument holding a quote, a newline or `${…}` stays one string
//! value, and can neither add a key nor read a secret through interpolation. The few slots
//! that stand in comments take only arguments already checked to hold nothing but name
//! characters ([`Slot::Plain`]).
//!
//! - `args`: what each argument may be (OWNER/REPO, a package name, a URL…), and the URLs
//!   made of them

mod args;

use args::Args;

/// Where the schema of bridge files is on a machine with the Debian package: the first line
/// of every file written names it, for editors.
pub const SCHEMA: &str = "/usr/share/pollhook/bridge.schema.json";

/// One recipe, as `pollhook new --list` shows it.
pub struct Recipe {
    pub name: &'static str,
    /// What its bridge watches, one line.
    pub about: &'static str,
    pub params: &'static [Param],
    /// The origin of the API the written file polls (`https://api.github.com`), for recipes
    /// whose arguments do not give it; tests put a local server in its place.
    pub origin: Option<&'static str>,
    fill: fn(&mut Args) -> Result<Filled, String>,
}

/// One argument of a recipe.
pub struct Param {
    pub name: &'static str,
    pub help: &'static str,
    pub optional: bool,
}

/// A template and what goes into its slots.
struct Filled {
    template: &'static str,
    /// What the bridge name is made of when no file name gives one.
    name: String,
    slots: Vec<(&'static str, Slot)>,
}

/// The text of one slot.
enum Slot {
    /// Any text, for a value that is interpolated (a URL, a header, a body): written as a
    /// double-quoted YAML scalar, `${` as `$${`.
    Quoted(String),
    /// Any text, for a value read as written (`description`): a double-quoted YAML scalar.
    Text(String),
    /// Text checked to hold only name characters (letters, digits, `._/@:-`): written as it
    /// is, in a comment or an unquoted scalar.
    Plain(String),
}

/// Why a recipe wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("no recipe named `{0}`{1}; `pollhook new --list` shows them")]
    Unknown(String, String),
    /// An argument missing, extra or malformed: the recipe, its usage and what is wrong.
    #[error("{recipe}: {problem} (usage: pollhook new {usage})")]
    Args {
        recipe: &'static str,
        usage: String,
        problem: String,
    },
}

const fn param(name: &'static str, help: &'static str) -> Param {
    Param {
        name,
        help,
        optional: false,
    }
}

const fn optional(name: &'static str, help: &'static str) -> Param {
    Param {
        name,
        help,
        optional: true,
    }
}

const REPO: Param = param("OWNER/REPO", "the repository, like tokio-rs/tokio");

/// Every recipe, in the order `--list` shows them.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "github-releases",
        about: "releases of a GitHub repository (published, edited, deleted)",
        params: &[REPO],
        origin: Some(args::GITHUB),
        fill: args::github_releases,
    },
    Recipe {
        name: "github-issues",
        about: "open issues of a GitHub repository (opened, edited, closed)",
        params: &[REPO],
        origin: Some(args::GITHUB),
        fill: args::github_issues,
    },
    Recipe {
        name: "gitlab",
        about: "open issues or the releases of a GitLab project",
        params: &[
            param(
                "PROJECT",
                "the project's path, like gitlab-org/gitlab, or its number",
            ),
            optional("WHAT", "issues (the default) or releases"),
        ],
        origin: Some(args::GITLAB),
        fill: args::gitlab,
    },
    Recipe {
        name: "rss",
        about: "entries of an RSS or Atom feed (new and edited)",
        params: &[param("URL", "the feed's URL")],
        origin: None,
        fill: args::rss,
    },
    Recipe {
        name: "pypi",
        about: "versions of a package on PyPI",
        params: &[param("PACKAGE", "the package's name, like requests")],
        origin: Some(args::PYPI),
        fill: args::pypi,
    },
    Recipe {
        name: "crates-io",
        about: "versions of a crate on crates.io (published, yanked)",
        params: &[param("CRATE", "the crate's name, like serde")],
        origin: Some(args::CRATES_IO),
        fill: args::crates_io,
    },
    Recipe {
        name: "npm",
        about: "versions of a package on npm (published, deprecated, unpublished)",
        params: &[param(
            "PACKAGE",
            "the package's name, like react or @types/node",
        )],
        origin: Some(args::NPM),
        fill: args::npm,
    },
    Recipe {
        name: "docker-hub-tags",
        about: "tags of an image on Docker Hub (pushed, moved, deleted)",
        params: &[param(
            "NAMESPACE/REPO",
            "the image, like grafana/grafana (a bare name is an official image: library/NAME)",
        )],
        origin: Some(args::DOCKER_HUB),
        fill: args::docker_hub_tags,
    },
    Recipe {
        name: "jira",
        about: "issues a JQL search finds in Jira Cloud (JIRA_EMAIL, JIRA_API_TOKEN)",
        params: &[
            param("BASE_URL", "the site, like https://example.atlassian.net"),
            param(
                "JQL",
                "the search, like \"project = ENG AND statusCategory != Done\"",
            ),
        ],
        origin: None,
        fill: args::jira,
    },
    Recipe {
        name: "linear",
        about: "open issues of a Linear team, by GraphQL (LINEAR_API_KEY)",
        params: &[param("TEAM", "the team's key, like ENG")],
        origin: Some(args::LINEAR),
        fill: args::linear,
    },
    Recipe {
        name: "generic-json",
        about: "items of any JSON API, page by page (edit the paths and paging to fit)",
        params: &[
            param("URL", "the first page's URL"),
            optional("SELECT", "JSONPath of the items in a page [default: $[*]]"),
            optional("KEY", "JSONPath of an item's key [default: $.id]"),
        ],
        origin: None,
        fill: args::generic_json,
    },
];

impl Recipe {
    /// `github-releases OWNER/REPO`, `gitlab PROJECT [WHAT]`.
    pub fn usage(&self) -> String {
        let mut s = self.name.to_string();
        for p in self.params {
            match p.optional {
                true => s.push_str(&format!(" [{}]", p.name)),
                false => s.push_str(&format!(" {}", p.name)),
            }
        }
        s
    }
}

/// The recipe of this name, or an error naming the nearest one.
pub fn find(name: &str) -> Result<&'static Recipe, RecipeError> {
    if let Some(r) = RECIPES.iter().find(|r| r.name == name) {
        return Ok(r);
    }
    let nearest = RECIPES
        .iter()
        .map(|r| (strsim::jaro_winkler(r.name, name), r.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let hint = nearest.map_or(String::new(), |(_, n)| format!(" (did you mean `{n}`?)"));
    Err(RecipeError::Unknown(name.to_string(), hint))
}

/// A bridge file a recipe wrote.
pub struct Written {
    /// The bridge's name in it.
    pub name: String,
    pub text: String,
}

/// The bridge file `recipe` writes for `given` (its arguments), named `name` when given (a
/// valid bridge name: `--to`'s file name), else after the arguments.
pub fn write(
    recipe: &Recipe,
    given: &[String],
    name: Option<&str>,
) -> Result<Written, RecipeError> {
    let bad = |problem: String| RecipeError::Args {
        recipe: recipe.name,
        usage: recipe.usage(),
        problem,
    };
    let required = recipe.params.iter().filter(|p| !p.optional).count();
    if given.len() < required || given.len() > recipe.params.len() {
        let names: Vec<_> = recipe.params.iter().map(|p| p.name).collect();
        let missing = names.get(given.len()).copied().unwrap_or_default();
        return Err(bad(match given.len() < required {
            true => format!("{missing} is missing"),
            false => format!("{} arguments given, at most {}", given.len(), names.len()),
        }));
    }
    let mut args = Args::new(given);
    let filled = (recipe.fill)(&mut args).map_err(bad)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => bridge_name(&filled.name),
    };
    let mut slots = filled.slots;
    slots.push(("name", Slot::Plain(name.clone())));
    slots.push(("recipe", Slot::Plain(recipe.name.to_string())));
    slots.push(("schema", Slot::Plain(SCHEMA.to_string())));
    let text = fill(filled.template, &slots).map_err(bad)?;
    Ok(Written { name, text })
}

/// Whether `s` may be a bridge's name: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_bridge_name(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A bridge name made of `hint`: lower case, each run of other characters one `-`, at most
/// 64 characters (`tokio-rs/tokio releases` -> `tokio-rs-tokio-releases`).
fn bridge_name(hint: &str) -> String {
    let mut name = String::new();
    for c in hint.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    name.truncate(64);
    let name = name.trim_end_matches('-').to_string();
    match name.is_empty() {
        true => "bridge".to_string(),
        false => name,
    }
}

/// `template` with each `{{slot}}` replaced.
fn fill(template: &str, slots: &[(&'static str, Slot)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a recipe template has an unclosed slot".to_string())?;
        let key = &after[..end];
        let slot = slots
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s)
            .ok_or_else(|| format!("a recipe template has a slot `{key}` left unfilled"))?;
        match slot {
            Slot::Quoted(text) => out.push_str(&quote(text, true)),
            Slot::Text(text) => out.push_str(&quote(text, false)),
            Slot::Plain(text) if args::plain(text) => out.push_str(text),
            Slot::Plain(_) => return Err(format!("`{key}` holds characters a name cannot")),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `s` as a double-quoted YAML scalar that reads back as exactly `s`: every character
/// outside printable ASCII escaped (`\n`, `\u2028`…), quotes and backslashes escaped, and,
/// for a value that is `interpolated`, each `${` written `$${` (interpolation's literal `${`).
pub fn quote(s: &str, interpolated: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' if interpolated && chars.peek() == Some(&'{') => out.push_str("$$"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::interpolate::{Env, interpolate};

    /// What a bridge file reads a quoted value as: the YAML string, then interpolated.
    fn read_back(quoted: &str, interpolated: bool) -> String {
        let v: serde_yaml::Value = serde_yaml::from_str(&format!("k: {quoted}\n")).unwrap();
        let text = v["k"].as_str().unwrap().to_string();
        match interpolated {
            true => {
                let env = Env::fixed(&[("HOME", "/root")], None);
                interpolate(&text, &env).unwrap().value
            }
            false => text,
        }
    }

    #[test]
    fn a_quoted_value_reads_back_as_itself() {
        for s in [
            "plain",
            "a \"quote\" and a \\ backslash",
            "line\nbreak: injected\nsinks: []",
            "${HOME}",
            "$${HOME}",
            "$$${HOME} $ {x} $",
            "tab\there, nul \0, del \u{7f}, nel \u{85}, ls \u{2028}, bom \u{feff}",
            "é ü 日本 🦀",
            "# not a comment",
            "'single' & *alias !tag",
        ] {
            for interpolated in [true, false] {
                let q = quote(s, interpolated);
                assert_eq!(read_back(&q, interpolated), s, "quoted as {q}");
            }
        }
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(
            bridge_name("tokio-rs/tokio releases"),
            "tokio-rs-tokio-releases"
        );
        assert_eq!(bridge_name("@types/node npm"), "types-node-npm");
        assert_eq!(bridge_name("///"), "bridge");
        assert!(is_bridge_name(&bridge_name(&"Ab.".repeat(40))));
        assert!(!is_bridge_name("-x") && !is_bridge_name("X") && is_bridge_name("x_1-2"));
    }

    #[test]
    fn every_template_is_filled() {
        let samples: &[(&str, &[&str])] = &[
            ("github-releases", &["tokio-rs/tokio"]),
            ("github-issues", &["tokio-rs/tokio"]),
            ("gitlab", &["gitlab-org/gitlab"]),
            ("gitlab", &["gitlab-org/gitlab", "releases"]),
            ("rss", &["https://blog.rust-lang.org/feed.xml"]),
            ("pypi", &["requests"]),
            ("crates-io", &["serde"]),
            ("npm", &["@types/node"]),
            ("docker-hub-tags", &["nginx"]),
            ("jira", &["https://example.atlassian.net", "project = ENG"]),
            ("linear", &["ENG"]),
            ("generic-json", &["https://api.example.com/v1/things"]),
        ];
        for r in RECIPES {
            assert!(
                samples.iter().any(|(n, _)| *n == r.name),
                "{} untried",
                r.name
            );
        }
        for (name, given) in samples {
            let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
            let text = write(find(name).unwrap(), &given, None).unwrap().text;
            assert!(!text.contains("{{"), "{name}: {text}");
            assert!(text.starts_with("# yaml-language-server: $schema=/usr/share/pollhook/"));
        }
    }

    #[test]
    fn a_wrong_count_or_an_unknown_recipe_says_so() {
        let r = find("gitlab").unwrap();
        let e = write(r, &[], None).err().unwrap().to_string();
        assert!(
            e.contains("PROJECT is missing") && e.contains("gitlab PROJECT [WHAT]"),
            "{e}"
        );
        let three = ["a/b", "issues", "x"].map(String::from);
        let e = write(r, &three, None).err().unwrap().to_string();
        assert!(e.contains("3 arguments given, at most 2"), "{e}");
        let e = find("github-release").err().unwrap().to_string();
        assert!(e.contains("did you mean `github-releases`"), "{e}");
    }
}
