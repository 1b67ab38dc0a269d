//! Which shard this process is (docs/scaling.md#shards): `--shard I/N` says it outright;
//! `--shard auto/N` and `--shard auto` find I in `POLLHOOK_SHARD_INDEX`, else in the trailing
//! `-<n>` of the host name (a StatefulSet's pod `pollhook-2` is shard 2), and `--shard auto`
//! finds N in `POLLHOOK_SHARDS`. Parsing is pure ([`Shard::parse`]); [`Shard::from_arg`] reads
//! the process's environment and host name.

/// One shard of a set: this process runs the bridges that [`super::owner`] gives `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub shards: u64,
}

/// Where `--shard auto` looks.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `POLLHOOK_SHARD_INDEX`.
    pub index: Option<String>,
    /// `POLLHOOK_SHARDS`.
    pub shards: Option<String>,
    /// The host name (a pod's is its name).
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("--shard `{0}`: expected I/N (e.g. 0/4), auto/N or auto")]
    Form(String),
    #[error("--shard `{arg}`: {what} `{value}` is not a whole number")]
    Number {
        arg: String,
        what: &'static str,
        value: String,
    },
    #[error("--shard `{0}`: the number of shards must be at least 1")]
    NoShards(String),
    #[error(
        "--shard `{0}`: no number of shards: give it as --shard auto/N, or set POLLHOOK_SHARDS"
    )]
    NoCount(String),
    #[error(
        "--shard `{arg}`: no shard index: set POLLHOOK_SHARD_INDEX, or run on a host whose \
         name ends in -<n> (as a StatefulSet's pod pollhook-2 does); this host is named `{host}`"
    )]
    NoIndex { arg: String, host: String },
    #[error(
        "--shard `{arg}`: shard index {index} ({from}) is not below the number of shards, {shards}"
    )]
    TooHigh {
        arg: String,
        index: u64,
        shards: u64,
        from: String,
    },
}

fn number(arg: &str, what: &'static str, value: &str) -> Result<u64, SpecError> {
    value.trim().parse().map_err(|_| SpecError::Number {
        arg: arg.to_string(),
        what,
        value: value.to_string(),
    })
}

/// The trailing `-<n>` of a host name (its first label): `pollhook-2` and
/// `pollhook-2.pollhook.ns.svc` are 2.
pub fn host_ordinal(host: &str) -> Option<u64> {
    let label = host.trim().split('.').next()?;
    let (_, n) = label.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

impl Shard {
    /// `arg` as given to `--shard`, the `auto` parts looked up in `src`.
    pub fn parse(arg: &str, src: &Sources) -> Result<Shard, SpecError> {
        let (i, n) = match arg.trim().split_once('/') {
            Some((i, n)) => (i.trim(), Some(n.trim())),
            None if arg.trim() == "auto" => ("auto", None),
            None => return Err(SpecError::Form(arg.to_string())),
        };
        let shards = match (n, src.shards.as_deref()) {
            (Some(n), _) => number(arg, "the number of shards", n)?,
            (None, Some(n)) => number(arg, "POLLHOOK_SHARDS", n)?,
            (None, None) => return Err(SpecError::NoCount(arg.to_string())),
        };
        if shards == 0 {
            return Err(SpecError::NoShards(arg.to_string()));
        }
        let (index, from) = if i != "auto" {
            (number(arg, "the shard index", i)?, "given".to_string())
        } else if let Some(v) = src.index.as_deref().filter(|v| !v.trim().is_empty()) {
            let from = "from POLLHOOK_SHARD_INDEX".to_string();
            (number(arg, "POLLHOOK_SHARD_INDEX", v)?, from)
        } else {
            let host = src.host.clone().unwrap_or_default();
            let index = host_ordinal(&host).ok_or_else(|| SpecError::NoIndex {
                arg: arg.to_string(),
                host: host.trim().to_string(),
            })?;
            (index, format!("from the host name {}", host.trim()))
        };
        if index >= shards {
            return Err(SpecError::TooHigh {
                arg: arg.to_string(),
                index,
                shards,
                from,
            });
        }
        Ok(Shard { index, shards })
    }

    /// `arg`, looked up in this process's environment and host name.
    pub fn from_arg(arg: &str) -> Result<Shard, SpecError> {
        let var = |k: &str| std::env::var(k).ok();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| var("HOSTNAME"));
        let src = Sources {
            index: var("POLLHOOK_SHARD_INDEX"),
            shards: var("POLLHOOK_SHARDS"),
            host,
        };
        Shard::parse(arg, &src)
    }

    /// Whether this shard owns the bridge `name`.
    pub fn owns(&self, name: &str) -> bool {
        super::owner(name, self.shards) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(index: Option<&str>, shards: Option<&str>, host: Option<&str>) -> Sources {
        Sources {
            index: index.map(String::from),
            shards: shards.map(String::from),
            host: host.map(String::from),
        }
    }

    fn shard(index: u64, shards: u64) -> Result<Shard, SpecError> {
        Ok(Shard { index, shards })
    }

    #[test]
    fn explicit_and_auto_forms() {
        let none = Sources::default();
        assert_eq!(Shard::parse("2/4", &none), shard(2, 4));
        assert_eq!(Shard::parse(" 0 / 1 ", &none), shard(0, 1));
        // The environment wins over the host name; the host's first label counts.
        let both = src(Some("1"), None, Some("pollhook-3"));
        assert_eq!(Shard::parse("auto/4", &both), shard(1, 4));
        let host = src(
            None,
            None,
            Some("pollhook-3.pollhook.ns.svc.cluster.local\n"),
        );
        assert_eq!(Shard::parse("auto/4", &host), shard(3, 4));
        let all = src(None, Some("5"), Some("my-app-pollhook-4"));
        assert_eq!(Shard::parse("auto", &all), shard(4, 5));
        // N given beats POLLHOOK_SHARDS; an empty POLLHOOK_SHARD_INDEX is not set.
        let envs = src(Some(""), Some("2"), Some("web-0"));
        assert_eq!(Shard::parse("auto/3", &envs), shard(0, 3));
        // An explicit index ignores the environment.
        assert_eq!(
            Shard::parse("1/3", &src(Some("2"), None, None)),
            shard(1, 3)
        );
    }

    #[test]
    fn every_bad_form_says_what_is_missing() {
        let e = |arg: &str, s: &Sources| Shard::parse(arg, s).unwrap_err().to_string();
        let none = Sources::default();
        assert_eq!(
            e("4", &none),
            "--shard `4`: expected I/N (e.g. 0/4), auto/N or auto"
        );
        assert_eq!(
            e("auto", &none),
            "--shard `auto`: no number of shards: give it as --shard auto/N, or set POLLHOOK_SHARDS"
        );
        assert_eq!(
            e("auto/4", &src(None, None, Some("web"))),
            "--shard `auto/4`: no shard index: set POLLHOOK_SHARD_INDEX, or run on a host whose \
             name ends in -<n> (as a StatefulSet's pod pollhook-2 does); this host is named `web`"
        );
        for host in ["web-", "web-x1", "-", ""] {
            assert!(e("auto/4", &src(None, None, Some(host))).contains("no shard index"));
        }
        assert_eq!(
            e("auto/4", &src(None, None, Some("pollhook-4"))),
            "--shard `auto/4`: shard index 4 (from the host name pollhook-4) is not below the \
             number of shards, 4"
        );
        assert_eq!(
            e("auto", &src(Some("7"), Some("3"), None)),
            "--shard `auto`: shard index 7 (from POLLHOOK_SHARD_INDEX) is not below the number \
             of shards, 3"
        );
        assert_eq!(
            e("2/2", &none),
            "--shard `2/2`: shard index 2 (given) is not below the number of shards, 2"
        );
        assert_eq!(
            e("0/0", &none),
            "--shard `0/0`: the number of shards must be at least 1"
        );
        assert_eq!(
            e("auto", &src(Some("x"), Some("3"), None)),
            "--shard `auto`: POLLHOOK_SHARD_INDEX `x` is not a whole number"
        );
        assert_eq!(
            e("auto", &src(None, Some("-1"), Some("p-0"))),
            "--shard `auto`: POLLHOOK_SHARDS `-1` is not a whole number"
        );
        assert_eq!(
            e("a/4", &none),
            "--shard `a/4`: the shard index `a` is not a whole number"
        );
    }

    #[test]
    fn host_ordinals() {
        assert_eq!(host_ordinal("pollhook-0"), Some(0));
        assert_eq!(host_ordinal("pollhook-12.svc"), Some(12));
        assert_eq!(host_ordinal("pollhook"), None);
        assert_eq!(host_ordinal("pollhook-1a"), None);
        assert_eq!(host_ordinal("pollhook-99999999999999999999999"), None);
    }
}
