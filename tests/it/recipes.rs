//! `pollhook new` (docs/operations.md#recipes): each recipe's bridge file, written by the
//! binary, polls a recorded copy of its API's answer served on 127.0.0.1 (the file's API
//! origin swapped for the local server's) and finds the items the real API would give, under
//! the keys the real API uses; `check` accepts every file; hostile arguments stay values.

use crate::support::{Answer, Harness, Upstream, cli};
use pollhook::config::{self, Bridge, Env};
use pollhook::event::Event;
use std::collections::BTreeSet;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/recipes");

/// The variables the recipes that need a login read.
const ENV: &[(&str, &str)] = &[
    ("JIRA_EMAIL", "ops@example.com"),
    ("JIRA_API_TOKEN", "jira-tok-4711"),
    ("LINEAR_API_KEY", "lin_api_0815"),
];

/// A recorded answer, `{{BASE}}` in it made the local server's origin.
fn recorded(up: &Upstream, file: &str, content_type: &'static str) -> Answer {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    Answer::new(200, content_type, &text.replace("{{BASE}}", &up.base))
}

fn json(up: &Upstream, file: &str) -> Answer {
    recorded(up, file, "application/json; charset=utf-8")
}

/// An upstream that answers only the routes a test gives it: any other request is a 404, so
/// a recipe asking for the wrong URL fails its poll.
async fn upstream() -> Upstream {
    let up = Upstream::start().await;
    up.set_answer(Answer::new(
        404,
        "application/json",
        r#"{"message":"Not Found"}"#,
    ));
    up
}

/// `pollhook new ARGS` as the binary writes it, pointed at `up` (the recipe's API origin, or
/// `https://api.example.invalid` in arguments, made the local server's) and announcing the
/// items already there, so that the first poll's events show the keys the recipe reads.
fn written(args: &[&str], up: &Upstream) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("https://api.example.invalid", &up.base))
        .collect();
    let mut argv = vec!["new"];
    argv.extend(args.iter().map(String::as_str));
    let (code, text, err) = cli(&argv);
    assert_eq!(code, 0, "pollhook {argv:?}: {err}");
    let recipe = pollhook::recipes::find(&args[0]).unwrap();
    let text = match recipe.origin {
        Some(origin) => {
            assert!(text.contains(origin), "{text}");
            text.replace(origin, &up.base)
        }
        None => text,
    };
    assert!(text.contains("first_poll: baseline"), "{text}");
    text.replace("first_poll: baseline", "first_poll: emit")
}

fn load(h: &Harness, text: &str) -> Bridge {
    std::fs::write(h.bridges_dir().join("recipe.yaml"), text).unwrap();
    let mut all = config::load_dir(&h.bridges_dir(), &Env::fixed(ENV, None))
        .unwrap_or_else(|p| panic!("the recipe's file does not load:\n{p}\n{text}"));
    all.remove(0)
}

/// The recipe's first poll against `up`: its events.
async fn first_poll(args: &[&str], up: &Upstream) -> Vec<Event> {
    let h = Harness::new();
    let b = load(&h, &written(args, up));
    let report = h.poll(&b).await.unwrap_or_else(|e| panic!("{args:?}: {e}"));
    report.events
}

fn keys(events: &[Event]) -> BTreeSet<String> {
    for e in events {
        assert_eq!(e.kind.as_str(), "item.created", "{e:?}");
    }
    events.iter().map(|e| e.key.clone()).collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// The data an event carries, as JSON.
fn data(events: &[Event], key: &str) -> serde_json::Value {
    let e = events.iter().find(|e| e.key == key).unwrap();
    serde_json::from_str(e.data.as_ref().unwrap().get()).unwrap()
}

#[tokio::test]
async fn github_releases_follow_the_link_header() {
    let up = upstream().await;
    let first = "/repos/tokio-rs/tokio/releases?per_page=100";
    let second = "/repos/tokio-rs/tokio/releases?per_page=100&page=2";
    let link = format!(
        "<{0}{second}>; rel=\"next\", <{0}{second}>; rel=\"last\"",
        up.base
    );
    up.route(
        first,
        json(&up, "github-releases-1.json").header("link", &link),
    );
    up.route(second, json(&up, "github-releases-2.json"));
    let events = first_poll(&["github-releases", "tokio-rs/tokio"], &up).await;
    assert_eq!(keys(&events), set(&["190321654", "186455104", "181027283"]));
    let d = data(&events, "190321654");
    assert_eq!(d["tag_name"], "tokio-1.42.0");
    assert!(d.get("reactions").is_none(), "only the included parts: {d}");
    let hit = &up.hits()[0];
    assert_eq!(hit.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(hit.header("x-github-api-version"), Some("2022-11-28"));
}

#[tokio::test]
async fn github_issues_leave_pull_requests_out() {
    let up = upstream().await;
    up.route(
        "/repos/tokio-rs/tokio/issues?state=open&per_page=100",
        json(&up, "github-issues.json"),
    );
    let events = first_poll(&["github-issues", "tokio-rs/tokio"], &up).await;
    assert_eq!(keys(&events), set(&["7012", "6998"]));
    let d = data(&events, "6998");
    assert_eq!(d["milestone"]["title"], "1.43");
    assert_eq!(d["labels"][0]["name"], "C-tracking-issue");
}

#[tokio::test]
async fn gitlab_issues_and_releases() {
    let up = upstream().await;
    let first = "/api/v4/projects/gitlab-org%2Fgitlab/issues?state=opened&per_page=100";
    let second =
        "/api/v4/projects/gitlab-org%2Fgitlab/issues?id=278964&page=2&per_page=100&state=opened";
    let link = format!(
        "<{0}{second}>; rel=\"next\", <{0}{first}&page=1>; rel=\"first\", <{0}{second}>; rel=\"last\"",
        up.base
    );
    up.route(
        first,
        json(&up, "gitlab-issues-1.json").header("link", &link),
    );
    up.route(second, json(&up, "gitlab-issues-2.json"));
    let events = first_poll(&["gitlab", "gitlab-org/gitlab"], &up).await;
    assert_eq!(keys(&events), set(&["508112", "508047", "507710"]));
    assert_eq!(
        data(&events, "508112")["assignees"][0]["username"],
        "mfluharty"
    );

    up.route(
        "/api/v4/projects/gitlab-org%2Fgitlab-runner/releases?per_page=100",
        json(&up, "gitlab-releases.json"),
    );
    let args = ["gitlab", "gitlab-org/gitlab-runner", "releases"];
    let events = first_poll(&args, &up).await;
    assert_eq!(keys(&events), set(&["v17.6.0", "v17.5.3"]));
}

#[tokio::test]
async fn an_atom_feed() {
    let up = upstream().await;
    up.route(
        "/feed.xml",
        recorded(&up, "feed.atom", "application/atom+xml"),
    );
    let events = first_poll(&["rss", "https://api.example.invalid/feed.xml"], &up).await;
    assert_eq!(
        keys(&events),
        set(&[
            "https://blog.example.org/2024/12/05/survey-results",
            "https://blog.example.org/2024/11/28/build-cache"
        ])
    );
    let d = data(&events, "https://blog.example.org/2024/11/28/build-cache");
    assert_eq!(d["title"], "Faster builds with the new cache");
}

#[tokio::test]
async fn pypi_versions_from_the_simple_index() {
    let up = upstream().await;
    up.route(
        "/simple/requests/",
        recorded(
            &up,
            "pypi-simple.json",
            "application/vnd.pypi.simple.v1+json",
        ),
    );
    // Written as its users spell it: the index's own (normalized) name is asked for.
    let events = first_poll(&["pypi", "Requests"], &up).await;
    assert_eq!(keys(&events), set(&["2.31.0", "2.32.0", "2.32.3"]));
    let hit = &up.hits()[0];
    assert_eq!(
        hit.header("accept"),
        Some("application/vnd.pypi.simple.v1+json")
    );
}

#[tokio::test]
async fn crates_io_versions_page_by_page() {
    let up = upstream().await;
    up.route(
        "/api/v1/crates/serde/versions?per_page=100&sort=date",
        json(&up, "crates-io-1.json"),
    );
    up.route(
        "/api/v1/crates/serde/versions?per_page=100&sort=date&seek=WzE3MzAxNTI5NTE4NzEyMDYsMTM4MDAyMl0",
        json(&up, "crates-io-2.json"),
    );
    let events = first_poll(&["crates-io", "serde"], &up).await;
    assert_eq!(keys(&events), set(&["1.0.215", "1.0.214", "0.1.0"]));
    assert_eq!(data(&events, "0.1.0")["yanked"], true);
    let agent = up.hits()[0].header("user-agent").unwrap().to_string();
    assert!(agent.starts_with("pollhook ("), "{agent}");
}

#[tokio::test]
async fn npm_versions_of_a_scoped_package() {
    let up = upstream().await;
    up.route(
        "/@types%2Fnode",
        recorded(
            &up,
            "npm-abbreviated.json",
            "application/vnd.npm.install-v1+json",
        ),
    );
    let events = first_poll(&["npm", "@types/node"], &up).await;
    assert_eq!(keys(&events), set(&["22.10.0", "22.10.1", "8.10.66"]));
    let d = data(&events, "8.10.66");
    assert!(d["deprecated"].as_str().unwrap().contains("stub"), "{d}");
    let accept = up.hits()[0].header("accept").unwrap().to_string();
    assert!(
        accept.starts_with("application/vnd.npm.install-v1+json"),
        "{accept}"
    );
}

#[tokio::test]
async fn docker_hub_tags_of_an_official_image() {
    let up = upstream().await;
    up.route(
        "/v2/namespaces/library/repositories/nginx/tags?page_size=100&ordering=last_updated",
        json(&up, "docker-hub-1.json"),
    );
    up.route(
        "/v2/namespaces/library/repositories/nginx/tags?ordering=last_updated&page=2&page_size=100",
        json(&up, "docker-hub-2.json"),
    );
    let events = first_poll(&["docker-hub-tags", "nginx"], &up).await;
    assert_eq!(keys(&events), set(&["latest", "1.27.3", "1.27.2-alpine"]));
}

#[tokio::test]
async fn a_jira_search_with_its_page_token_and_basic_auth() {
    let up = upstream().await;
    let first = "/rest/api/3/search/jql?jql=project+%3D+ENG+AND+statusCategory+%21%3D+Done&fields=summary%2Cstatus%2Cassignee%2Cpriority&maxResults=100";
    up.route(first, json(&up, "jira-1.json"));
    up.route(
        &format!("{first}&nextPageToken=Ch0jU3RyaW5nJkVORyUzRDQwOQ%3D%3D"),
        json(&up, "jira-2.json"),
    );
    let args = [
        "jira",
        "https://api.example.invalid/",
        "project = ENG AND statusCategory != Done",
    ];
    let events = first_poll(&args, &up).await;
    assert_eq!(keys(&events), set(&["ENG-412", "ENG-409", "ENG-398"]));
    assert_eq!(
        data(&events, "ENG-412")["fields"]["status"]["name"],
        "In Progress"
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("ops@example.com:jira-tok-4711");
    for hit in up.hits() {
        assert_eq!(
            hit.header("authorization"),
            Some(format!("Basic {basic}").as_str())
        );
    }
}

#[tokio::test]
async fn a_linear_team_by_graphql_with_the_cursor_as_a_variable() {
    let up = upstream().await;
    // One URL for every page: the answers come in order.
    up.then(json(&up, "linear-1.json"));
    up.then(json(&up, "linear-2.json"));
    let events = first_poll(&["linear", "ENG"], &up).await;
    assert_eq!(keys(&events), set(&["ENG-1024", "ENG-1019", "ENG-987"]));
    let hits = up.hits();
    assert_eq!(hits.len(), 2);
    for hit in &hits {
        assert_eq!(hit.method, "POST");
        assert_eq!(hit.uri, "/graphql");
        assert_eq!(hit.header("authorization"), Some("lin_api_0815"));
    }
    let body = |i: usize| serde_json::from_slice::<serde_json::Value>(&hits[i].body).unwrap();
    assert_eq!(body(0)["variables"]["team"], "ENG");
    assert!(
        body(0)["query"]
            .as_str()
            .unwrap()
            .contains("issues(first: 100")
    );
    assert_eq!(
        body(1)["variables"]["after"],
        "7f3e9a2c-1b4d-4e8f-9a0b-3c5d7e9f1a2b"
    );
}

#[tokio::test]
async fn a_generic_json_api_with_link_paging() {
    let up = upstream().await;
    let link = format!("<{}/v1/incidents?page=2>; rel=\"next\"", up.base);
    up.route(
        "/v1/incidents",
        json(&up, "generic-1.json").header("link", &link),
    );
    up.route("/v1/incidents?page=2", json(&up, "generic-2.json"));
    let events = first_poll(
        &["generic-json", "https://api.example.invalid/v1/incidents"],
        &up,
    )
    .await;
    assert_eq!(keys(&events), set(&["101", "102", "98"]));
}

/// Every recipe's file, written with `--to`, is accepted by `pollhook check` as it is (the
/// real APIs' URLs; the variables the logins read set).
#[test]
fn check_accepts_every_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let runs: &[&[&str]] = &[
        &["github-releases", "tokio-rs/tokio"],
        &["github-issues", "rust-lang/rust"],
        &["gitlab", "gitlab-org/gitlab"],
        &["gitlab", "gitlab-org/gitlab-runner", "releases"],
        &["rss", "https://blog.rust-lang.org/feed.xml"],
        &["pypi", "requests"],
        &["crates-io", "serde"],
        &["npm", "@types/node"],
        &["docker-hub-tags", "grafana/grafana"],
        &[
            "jira",
            "https://example.atlassian.net",
            "assignee = currentUser()",
        ],
        &["linear", "ENG"],
        &[
            "generic-json",
            "https://api.example.com/v1/things",
            "$.data[*]",
            "$.uuid",
        ],
    ];
    for r in pollhook::recipes::RECIPES {
        assert!(runs.iter().any(|a| a[0] == r.name), "{} not tried", r.name);
    }
    let mut names = BTreeSet::new();
    for (i, args) in runs.iter().enumerate() {
        let to = dir.path().join(format!("{}-{i}.yaml", args[0]));
        let mut argv = vec!["new"];
        argv.extend_from_slice(args);
        argv.extend(["--to", to.to_str().unwrap()]);
        let (code, out, err) = cli(&argv);
        assert_eq!((code, out.as_str()), (0, ""), "{argv:?}: {err}");
        let text = std::fs::read_to_string(&to).unwrap();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "# yaml-language-server: $schema=/usr/share/pollhook/bridge.schema.json"
        );
        // The file's name names the bridge.
        let name = format!("{}-{i}", args[0]);
        assert!(text.contains(&format!("\nname: {name}\n")), "{text}");
        names.insert(name);
    }
    let dir_arg = dir.path().to_str().unwrap();
    let mut env = ENV.to_vec();
    env.push(("GITHUB_TOKEN", "unused"));
    let (code, out, err) = crate::support::cli_env(&["check", dir_arg], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("ok: {} bridges", names.len()));
}

#[test]
fn an_existing_file_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("serde.yaml");
    std::fs::write(&to, "mine\n").unwrap();
    let (code, _, err) = cli(&["new", "crates-io", "serde", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("exists; not overwritten"), "{err}");
    assert_eq!(std::fs::read_to_string(&to).unwrap(), "mine\n");
}

#[test]
fn malformed_arguments_exit_2_naming_the_argument() {
    let cases: &[(&[&str], &str)] = &[
        (&["github-releases", "tokio"], "is not OWNER/REPO"),
        (&["github-issues", "a/b/c"], "is not OWNER/REPO"),
        (&["github-releases", "../x/y"], "is not OWNER/REPO"),
        (&["github-releases"], "OWNER/REPO is missing"),
        (
            &["gitlab", "group/project", "wiki"],
            "WHAT is `issues` or `releases`",
        ),
        (&["gitlab", "project"], "is not a project path"),
        (
            &["rss", "ftp://example.com/feed"],
            "is not an http or https URL",
        ),
        (&["rss", "not a url"], "is not a URL"),
        (&["pypi", ".requests"], "is not a PyPI package name"),
        (&["crates-io", "9lives"], "is not a crate name"),
        (&["npm", "React"], "is not an npm package name"),
        (&["npm", "@scope"], "is not an npm package name"),
        (
            &["docker-hub-tags", "Grafana/Grafana"],
            "is not NAMESPACE/REPO",
        ),
        (&["jira", "https://x.atlassian.net", " "], "JQL is empty"),
        (&["linear", "ENG-1"], "is not a team key"),
        (
            &["generic-json", "https://x.example/", "$[", "$.id"],
            "SELECT `$[` is not a JSONPath",
        ),
        (
            &["pypi", "requests", "extra"],
            "2 arguments given, at most 1",
        ),
        (&["github-relases", "a/b"], "did you mean `github-releases`"),
    ];
    for (args, expected) in cases {
        let mut argv = vec!["new"];
        argv.extend_from_slice(args);
        let (code, out, err) = cli(&argv);
        assert_eq!(code, 2, "{argv:?}: {out}{err}");
        assert!(out.is_empty(), "{argv:?} wrote {out}");
        assert!(err.contains(expected), "{argv:?}: {err}");
    }
}

#[test]
fn the_list_names_every_recipe_with_its_arguments() {
    let (code, out, err) = cli(&["new", "--list"]);
    assert_eq!(code, 0, "{err}");
    for r in pollhook::recipes::RECIPES {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{} ", r.name)))
            .unwrap_or_else(|| panic!("{} not listed:\n{out}", r.name));
        assert!(
            line.contains(&r.usage()) && line.contains(r.about),
            "{line}"
        );
        for p in r.params {
            assert!(
                out.contains(&format!("    {}: {}", p.name, p.help)),
                "{out}"
            );
        }
    }
}

/// Arguments that try to write YAML of their own (a line break, a quote, a key) or to read a
/// secret through `${…}` stay the values they are: the file has the recipe's keys and sinks
/// only, and the secret goes nowhere.
#[tokio::test]
async fn hostile_arguments_stay_values() {
    let up = upstream().await;
    let jql = "x\"\nsinks: [{url: \"http://127.0.0.1:9/evil\"}]\nname: evil\n#${JIRA_API_TOKEN}";
    let (code, text, err) = cli(&["new", "jira", &up.base, jql]);
    assert_eq!(code, 0, "{err}");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let top: Vec<&str> = yaml
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        top,
        [
            "name",
            "description",
            "schedule",
            "source",
            "items",
            "emit",
            "sinks"
        ]
    );
    assert_ne!(yaml["name"], "evil");
    let h = Harness::new();
    let b = load(&h, &text);
    assert_eq!(b.sinks.len(), 1);
    // The description holds the search as given, `${…}` and all: nothing was read.
    assert_eq!(
        b.description.as_deref(),
        Some(format!("Jira issues found by {jql}").as_str())
    );
    assert!(!format!("{:?}{}", b.description, b.source.url).contains("jira-tok-4711"));
    let query: Vec<(String, String)> = b.source.url.query_pairs().into_owned().collect();
    assert_eq!(query[0], ("jql".to_string(), jql.to_string()));

    // A URL's query keeps `${…}` as written (the url crate leaves `$`, `{`, `}` there), and
    // SELECT and KEY go into quoted scalars.
    up.route(
        "/things?q=$%7BJIRA_API_TOKEN%7D",
        Answer::new(200, "application/json", r#"{"a\"b": [{"k'\n": 1}]}"#),
    );
    up.route(
        "/things?q=${JIRA_API_TOKEN}",
        Answer::new(200, "application/json", r#"{"a\"b": [{"k'\n": 1}]}"#),
    );
    let url = format!("{}/things?q=${{JIRA_API_TOKEN}}", up.base);
    let args = [
        "generic-json",
        url.as_str(),
        r#"$["a\"b"][*]"#,
        r#"$["k'\n"]"#,
    ];
    let text = written(&args, &up);
    let b = load(&h, &text);
    assert!(b.secrets.is_empty(), "{:?}", b.secrets);
    let report = h.poll(&b).await.unwrap();
    assert_eq!(keys(&report.events), set(&["1"]));
    for hit in up.hits() {
        assert!(!hit.uri.contains("jira-tok"), "{}", hit.uri);
    }
}
