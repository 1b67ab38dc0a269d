//! The systemd units as files: the directories systemd makes for `pollhook.service` and for
//! each `pollhook@I.service` must not nest in (or be) one another's, since `DynamicUser=`
//! makes the service's `/var/lib/pollhook` a symlink and a shard's directory inside it kept
//! either unit from starting after the other had run; and the command the shard unit runs to
//! move state from that old layout, on a directory tree laid out as systemd left it.

use crate::support::*;
use std::path::Path;

/// The values of `key=` in a unit's `[Service]` section, in order, space-separated lists
/// split (and a `:mode`/`:target` suffix of a directory dropped).
fn values(unit: &str, key: &str) -> Vec<String> {
    values_in(unit, "[Service]", key)
}

fn values_in(unit: &str, section: &str, key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == section;
        } else if let Some((k, v)) = line.split_once('=') {
            if in_service && k.trim() == key {
                out.extend(
                    v.split_whitespace()
                        .map(|w| w.split(':').next().unwrap_or_default().to_string()),
                );
            }
        }
    }
    out
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(name),
    )
    .unwrap()
}

/// `a` is `b` or inside it.
fn within(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}/"))
}

/// Directories systemd owns for the unit's dynamic user, by kind: two units sharing or nesting
/// one fight over it. (`ConfigurationDirectory=` is root's and only read; the service and the
/// shards share `/etc/pollhook` on purpose.)
const OWNED: [&str; 4] = [
    "StateDirectory",
    "RuntimeDirectory",
    "CacheDirectory",
    "LogsDirectory",
];

#[test]
fn the_shards_directories_are_beside_the_services_not_in_it() {
    let (single, template) = (unit("pollhook.service"), unit("pollhook@.service"));
    assert_eq!(values(&single, "StateDirectory"), ["pollhook"]);
    let shard = |i: u32| template.replace("%i", &i.to_string());
    for kind in OWNED {
        for i in 0..10 {
            let mine = values(&shard(i), kind);
            for d in &mine {
                for s in values(&single, kind) {
                    assert!(
                        !within(d, &s) && !within(&s, d),
                        "{kind}: shard {i}'s {d} and pollhook.service's {s} nest"
                    );
                }
                for j in (0..10).filter(|j| *j != i) {
                    for o in values(&shard(j), kind) {
                        assert!(
                            !within(d, &o),
                            "{kind}: shard {i}'s {d} and shard {j}'s {o}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(values(&shard(3), "StateDirectory"), ["pollhook-shard-3"]);
    assert_eq!(values(&shard(3), "RuntimeDirectory"), ["pollhook-shard-3"]);
    assert_eq!(
        values(&single, "ConfigurationDirectory"),
        values(&template, "ConfigurationDirectory")
    );
    // The move from the old layout runs before each start of either, as root, with the
    // same binary.
    let binary = values(&template, "ExecStart")[0].clone();
    assert_eq!(values(&single, "ExecStart")[0], binary);
    let mover = unit("pollhook-move-state.service");
    assert_eq!(values(&mover, "Type"), ["oneshot"]);
    assert!(values(&mover, "DynamicUser").is_empty() && values(&mover, "User").is_empty());
    assert_eq!(
        mover.lines().find(|l| l.starts_with("ExecStart=")).unwrap(),
        format!("ExecStart={binary} store move-shards")
    );
    for u in [&single, &template] {
        for key in ["Requires", "After"] {
            assert!(
                values_in(u, "[Unit]", key).contains(&"pollhook-move-state.service".to_string()),
                "{key}= in {u}"
            );
        }
    }
}

#[test]
fn store_move_shards_moves_the_old_layout_once() {
    use std::os::unix::fs::symlink;
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    // As the old pollhook@0.service left /var/lib: state in private/pollhook/shard-0, a real
    // pollhook/ holding a symlink to it.
    let old = root.path().join("private/pollhook/shard-0");
    std::fs::create_dir_all(old.join("pollhook.sled")).unwrap();
    std::fs::write(old.join("pollhook.sled/conf"), "kept").unwrap();
    std::fs::create_dir_all(root.path().join("pollhook")).unwrap();
    symlink(
        "../private/pollhook/shard-0",
        root.path().join("pollhook/shard-0"),
    )
    .unwrap();
    let args = ["store", "move-shards", "--root", root_arg];
    let (code, out, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
    let new = root.path().join("private/pollhook-shard-0");
    assert_eq!(
        out.trim(),
        format!(
            "shard 0: state moved from {} to {} (1 entry)",
            old.display(),
            new.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(new.join("pollhook.sled/conf")).unwrap(),
        "kept"
    );
    // Nothing of the old layout is left in pollhook.service's way.
    assert!(std::fs::symlink_metadata(root.path().join("pollhook")).is_err());
    assert!(!root.path().join("private/pollhook").exists());
    // Before every start: silent when there is nothing to do.
    assert_eq!(cli(&args), (0, String::new(), String::new()));
}
