//! Each recipe's arguments checked (a malformed one is an error naming it, before anything is
//! written), and the API URLs made of them, each part encoded as its place in the URL needs.

use super::{Filled, Slot};
use url::Url;

pub(super) const GITHUB: &str = "https://api.github.com";
pub(super) const GITLAB: &str = "https://gitlab.com";
pub(super) const PYPI: &str = "https://pypi.org";
pub(super) const CRATES_IO: &str = "https://crates.io";
pub(super) const NPM: &str = "https://registry.npmjs.org";
pub(super) const DOCKER_HUB: &str = "https://hub.docker.com";
pub(super) const LINEAR: &str = "https://api.linear.app";

/// A recipe's arguments, taken in order (their count is checked before).
pub(super) struct Args<'a> {
    given: std::slice::Iter<'a, String>,
}

impl<'a> Args<'a> {
    pub(super) fn new(given: &'a [String]) -> Self {
        Args {
            given: given.iter(),
        }
    }

    fn next(&mut self) -> &'a str {
        self.given.next().map(String::as_str).unwrap_or_default()
    }

    fn optional(&mut self) -> Option<&'a str> {
        self.given.next().map(String::as_str)
    }
}

/// Whether `s` holds only name characters (letters, digits, `._/@:+-`): such text may stand
/// unquoted in a comment or a scalar.
pub(super) fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/@:+-".contains(c))
}

/// `https://origin` with these path segments (each percent-encoded as one segment: a `/` in
/// one is `%2F`) and query pairs.
fn api_url(origin: &str, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, String> {
    let mut url = Url::parse(origin).map_err(|e| format!("{origin}: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| format!("{origin} cannot have a path"))?
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

fn quoted(text: impl Into<String>) -> Slot {
    Slot::Quoted(text.into())
}

/// The `description` slot: text read as written.
fn description(text: String) -> (&'static str, Slot) {
    ("description", Slot::Text(text))
}

/// A name made of ASCII letters, digits and `extra`, at most `max` long, not `.` or `..`.
fn name_like(s: &str, extra: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// `OWNER/REPO` as GitHub allows them.
fn github_repo(s: &str) -> Result<(&str, &str), String> {
    match s.split_once('/') {
        Some((owner, repo))
            if name_like(owner, "-", 39)
                && !owner.starts_with('-')
                && name_like(repo, "._-", 100) =>
        {
            Ok((owner, repo))
        }
        _ => Err(format!(
            "`{}` is not OWNER/REPO (like tokio-rs/tokio)",
            s.escape_debug()
        )),
    }
}

fn github(
    args: &mut Args,
    template: &'static str,
    what: &str,
    path: &str,
) -> Result<Filled, String> {
    let arg = args.next();
    let (owner, repo) = github_repo(arg)?;
    let query: &[(&str, &str)] = match path {
        "issues" => &[("state", "open"), ("per_page", "100")],
        _ => &[("per_page", "100")],
    };
    let url = api_url(GITHUB, &["repos", owner, repo, path], query)?;
    Ok(Filled {
        template,
        name: format!("{owner}-{repo}-{path}"),
        slots: vec![
            ("repo", Slot::Plain(format!("{owner}/{repo}"))),
            ("url", quoted(url)),
            description(format!("{what} of {owner}/{repo} on GitHub")),
        ],
    })
}

pub(super) fn github_releases(args: &mut Args) -> Result<Filled, String> {
    let t = include_str!("templates/github-releases.yaml");
    github(args, t, "Releases", "releases")
}

pub(super) fn github_issues(args: &mut Args) -> Result<Filled, String> {
    let t = include_str!("templates/github-issues.yaml");
    github(args, t, "Open issues", "issues")
}

pub(super) fn gitlab(args: &mut Args) -> Result<Filled, String> {
    let project = args.next();
    let segments: Vec<&str> = project.split('/').collect();
    let numeric = project.chars().all(|c| c.is_ascii_digit()) && project.len() <= 20;
    let path_ok = segments.len() >= 2 && segments.iter().all(|s| name_like(s, "._-", 255));
    if !(numeric || path_ok) {
        return Err(format!(
            "`{}` is not a project path (like gitlab-org/gitlab) or number",
            project.escape_debug()
        ));
    }
    let (template, path, what, query): (_, _, _, &[(&str, &str)]) = match args.optional() {
        None | Some("issues") => (
            include_str!("templates/gitlab-issues.yaml"),
            "issues",
            "Open issues",
            &[("state", "opened"), ("per_page", "100")],
        ),
        Some("releases") => (
            include_str!("templates/gitlab-releases.yaml"),
            "releases",
            "Releases",
            &[("per_page", "100")],
        ),
        Some(other) => {
            return Err(format!(
                "WHAT is `issues` or `releases`, not `{}`",
                other.escape_debug()
            ));
        }
    };
    // The whole path is one segment of the API's URL: `gitlab-org%2Fgitlab`.
    let url = api_url(GITLAB, &["api", "v4", "projects", project, path], query)?;
    Ok(Filled {
        template,
        name: format!("{project}-{path}"),
        slots: vec![
            ("project", Slot::Plain(project.to_string())),
            ("url", quoted(url)),
            description(format!("{what} of {project} on GitLab")),
        ],
    })
}

/// An `http` or `https` URL with a host, as the url crate writes it (no spaces or line breaks
/// left in it).
fn web_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{}` is not a URL: {e}", s.escape_debug()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "`{}` is not an http or https URL",
            s.escape_debug()
        ));
    }
    Ok(url)
}

/// What a bridge watching `url` is named after: its host and path.
fn url_name(url: &Url, suffix: &str) -> String {
    let host = url.host_str().unwrap_or_default();
    format!("{host}{} {suffix}", url.path().trim_end_matches('/'))
}

pub(super) fn rss(args: &mut Args) -> Result<Filled, String> {
    let url = web_url(args.next())?;
    Ok(Filled {
        template: include_str!("templates/rss.yaml"),
        name: url_name(&url, "feed"),
        slots: vec![
            description(format!("Entries of the feed {url}")),
            ("url", quoted(url)),
        ],
    })
}

pub(super) fn pypi(args: &mut Args) -> Result<Filled, String> {
    let arg = args.next();
    let ends_ok = arg
        .chars()
        .next()
        .zip(arg.chars().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if !(ends_ok && name_like(arg, "._-", 200)) {
        return Err(format!(
            "`{}` is not a PyPI package name (letters, digits, `.`, `_`, `-`)",
            arg.escape_debug()
        ));
    }
    // The normalized name (PEP 503): what the simple index answers at without a redirect.
    let mut package = String::new();
    for c in arg.chars().map(|c| c.to_ascii_lowercase()) {
        match c {
            '.' | '_' | '-' if package.ends_with('-') => {}
            '.' | '_' | '-' => package.push('-'),
            c => package.push(c),
        }
    }
    let mut url = api_url(PYPI, &["simple", &package], &[])?;
    url.set_path(&format!("{}/", url.path()));
    Ok(Filled {
        template: include_str!("templates/pypi.yaml"),
        name: format!("{package}-pypi"),
        slots: vec![
            ("package", Slot::Plain(package.clone())),
            ("url", quoted(url)),
            description(format!("Versions of {package} on PyPI")),
        ],
    })
}

pub(super) fn crates_io(args: &mut Args) -> Result<Filled, String> {
    let krate = args.next();
    let first_ok = krate
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic());
    if !(first_ok && name_like(krate, "_-", 64)) {
        return Err(format!(
            "`{}` is not a crate name (a letter, then letters, digits, `_`, `-`; at most 64)",
            krate.escape_debug()
        ));
    }
    let query = [("per_page", "100"), ("sort", "date")];
    let url = api_url(
        CRATES_IO,
        &["api", "v1", "crates", krate, "versions"],
        &query,
    )?;
    Ok(Filled {
        template: include_str!("templates/crates-io.yaml"),
        name: format!("{krate}-crates-io"),
        slots: vec![
            ("crate", Slot::Plain(krate.to_string())),
            ("url", quoted(url)),
            description(format!("Versions of the {krate} crate")),
        ],
    })
}

pub(super) fn npm(args: &mut Args) -> Result<Filled, String> {
    let package = args.next();
    let (scope, name) = match package.strip_prefix('@').map(|p| p.split_once('/')) {
        Some(Some((scope, name))) => (Some(scope), name),
        Some(None) => (Some(""), ""),
        None => (None, package),
    };
    let part_ok = |s: &str| {
        name_like(s, "-._~", 214)
            && !s.starts_with(['.', '_'])
            && !s.chars().any(|c| c.is_ascii_uppercase())
    };
    if !(part_ok(name) && scope.is_none_or(part_ok) && package.len() <= 214) {
        return Err(format!(
            "`{}` is not an npm package name (like react or @types/node; lower case)",
            package.escape_debug()
        ));
    }
    // A scoped name is one segment of the registry's URL: `@types%2Fnode`.
    let url = api_url(NPM, &[package], &[])?;
    Ok(Filled {
        template: include_str!("templates/npm.yaml"),
        name: format!("{package}-npm"),
        slots: vec![
            ("package", Slot::Plain(package.to_string())),
            ("url", quoted(url)),
            description(format!("Versions of {package} on npm")),
        ],
    })
}

pub(super) fn docker_hub_tags(args: &mut Args) -> Result<Filled, String> {
    let image = args.next();
    let (namespace, repo) = image.split_once('/').unwrap_or(("library", image));
    let namespace_ok = name_like(namespace, "_-", 255) && namespace == namespace.to_lowercase();
    let repo_ok = name_like(repo, "._-", 255) && repo == repo.to_lowercase();
    if !(namespace_ok && repo_ok) {
        return Err(format!(
            "`{}` is not NAMESPACE/REPO (like grafana/grafana, or nginx for library/nginx; lower case)",
            image.escape_debug()
        ));
    }
    let segments = ["v2", "namespaces", namespace, "repositories", repo, "tags"];
    let query = [("page_size", "100"), ("ordering", "last_updated")];
    let url = api_url(DOCKER_HUB, &segments, &query)?;
    Ok(Filled {
        template: include_str!("templates/docker-hub-tags.yaml"),
        name: format!("{namespace}-{repo}-tags"),
        slots: vec![
            ("image", Slot::Plain(format!("{namespace}/{repo}"))),
            ("url", quoted(url)),
            description(format!("Tags of {namespace}/{repo} on Docker Hub")),
        ],
    })
}

pub(super) fn jira(args: &mut Args) -> Result<Filled, String> {
    let site = web_url(args.next())?;
    let jql = args.next();
    if jql.trim().is_empty() {
        return Err("JQL is empty (like \"project = ENG AND statusCategory != Done\")".into());
    }
    let origin = site.origin().ascii_serialization();
    let query = [
        ("jql", jql),
        ("fields", "summary,status,assignee,priority"),
        ("maxResults", "100"),
    ];
    let url = api_url(&origin, &["rest", "api", "3", "search", "jql"], &query)?;
    let host = site.host_str().unwrap_or_default();
    Ok(Filled {
        template: include_str!("templates/jira.yaml"),
        name: format!("{host} jira"),
        slots: vec![
            ("url", quoted(url)),
            description(format!("Jira issues found by {jql}")),
        ],
    })
}

pub(super) fn linear(args: &mut Args) -> Result<Filled, String> {
    let team = args.next();
    if !name_like(team, "", 16) {
        return Err(format!(
            "`{}` is not a team key (letters and digits, like ENG)",
            team.escape_debug()
        ));
    }
    Ok(Filled {
        template: include_str!("templates/linear.yaml"),
        name: format!("{team}-linear"),
        slots: vec![
            ("team", Slot::Plain(team.to_string())),
            ("team_value", quoted(team)),
            ("url", quoted(format!("{LINEAR}/graphql"))),
            description(format!("Open issues of the Linear team {team}")),
        ],
    })
}

pub(super) fn generic_json(args: &mut Args) -> Result<Filled, String> {
    let url = web_url(args.next())?;
    let select = args.optional().unwrap_or("$[*]");
    let key = args.optional().unwrap_or("$.id");
    for (what, path) in [("SELECT", select), ("KEY", key)] {
        crate::jsonpath::Path::parse(path)
            .map_err(|e| format!("{what} `{}` is not a JSONPath: {e}", path.escape_debug()))?;
    }
    Ok(Filled {
        template: include_str!("templates/generic-json.yaml"),
        name: url_name(&url, ""),
        slots: vec![
            description(format!("Items of {url}")),
            ("url", quoted(url)),
            ("select", quoted(select)),
            ("key", quoted(key)),
        ],
    })
}
