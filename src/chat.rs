//! What each chat receiver reads as markup in a message's text, and how text that came from a
//! source is kept from being read so. Whoever controls a source controls its items' titles:
//! an item titled `<!channel>` or `[click](https://evil.example)` must reach the channel as
//! those characters, not as a ping of the whole workspace or a disguised link.
//!
//! Two layers, each per receiver:
//! - [`escape`]: source text made to show as written, never as a mention or a link. It is
//!   applied to the default summary line, to every value a `message` template prints, and is
//!   the `escape_chat` filter of templates.
//! - [`defuse`]: the mention syntax taken out of a whole message (the template's own text
//!   too), unless the sink says `mentions: true`. Discord is also told so in the body
//!   ([`allowed_mentions`]), which is what it goes by.
//!
//! Where a receiver has an escape it honours, it is used (Slack's `&lt;`, Markdown's `\[`);
//! where it has none (Google Chat) or its clients disagree on it (Teams' backslash), a
//! zero-width space goes inside the syntax, which no parser then matches and no one sees.
//! Mattermost splits words for mentions on every character that is not a letter, digit or
//! one of `:._-@`, so a zero-width space after `@` leaves no `@channel` word, where a
//! backslash before it would not (the server would still see `@channel`).
//!
//! Pure, and a leaf: it imports nothing of the crate.

use std::fmt::Write;

/// Invisible, and not a letter, digit or punctuation: put inside `@everyone` or `<users/all>`
/// it breaks the word a receiver looks for.
pub const ZWSP: char = '\u{200B}';

/// A receiver whose message text is read as markup (or, for ntfy, not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    Slack,
    Mattermost,
    Discord,
    GoogleChat,
    Teams,
    Ntfy,
}

impl Receiver {
    /// Every receiver, in the order docs/configuration.md#what-the-source-says-stays-text
    /// lists them.
    pub const ALL: [Receiver; 6] = [
        Receiver::Slack,
        Receiver::Mattermost,
        Receiver::Discord,
        Receiver::GoogleChat,
        Receiver::Teams,
        Receiver::Ntfy,
    ];

    /// Its name, as a sink's `format` and the `escape_chat` filter spell it.
    pub fn name(self) -> &'static str {
        match self {
            Receiver::Slack => "slack",
            Receiver::Mattermost => "mattermost",
            Receiver::Discord => "discord",
            Receiver::GoogleChat => "google_chat",
            Receiver::Teams => "teams",
            Receiver::Ntfy => "ntfy",
        }
    }

    pub fn from_name(name: &str) -> Option<Receiver> {
        Receiver::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether a message to it can mention anyone at all (`mentions: true` means something).
    pub fn mentions(self) -> bool {
        !matches!(self, Receiver::Teams | Receiver::Ntfy)
    }
}

/// Source text as `to` shows it: every character as written, no mention, no link syntax.
pub fn escape(to: Receiver, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    // Writing to a String cannot fail.
    let _ = escape_to(to, text, &mut out);
    out
}

/// [`escape`] written piece by piece to `out`, so a long value is never copied whole first.
pub fn escape_to(to: Receiver, text: &str, out: &mut impl Write) -> std::fmt::Result {
    let mut plain = 0;
    for (i, c) in text.char_indices() {
        let Some(with) = replacement(to, c) else {
            continue;
        };
        out.write_str(&text[plain..i])?;
        out.write_str(with)?;
        plain = i + c.len_utf8();
    }
    out.write_str(&text[plain..])
}

/// What a character of source text becomes for `to`, when it is not itself.
fn replacement(to: Receiver, c: char) -> Option<&'static str> {
    use Receiver::*;
    Some(match (to, c) {
        // Slack's three control characters (its only escapes); Mattermost takes them too and
        // shows `&lt;` as `<` (Markdown), and with no `<` left it finds no `<!channel>` or
        // `<url|text>` of its Slack compatibility.
        (Slack | Mattermost, '&') => "&amp;",
        (Slack | Mattermost, '<') => "&lt;",
        (Slack | Mattermost, '>') => "&gt;",
        // Markdown: no link `[text](url)` or image, no code span that would show the other
        // escapes raw, no backslash that would undo one.
        (Mattermost | Discord, '\\') => "\\\\",
        (Mattermost | Discord, '[') => "\\[",
        (Mattermost | Discord, ']') => "\\]",
        (Mattermost | Discord, '`') => "\\`",
        // Discord: `<@id>`, `<#channel>`, `</command:id>`.
        (Discord, '<') => "\\<",
        // `@channel`, `@all`, `@here`, `@someone`, `@everyone`, `<@id>`.
        (Mattermost | Discord, '@') => "@\u{200B}",
        // Google Chat has no escape (`&lt;` shows as `&lt;`): `<users/all>` and
        // `<url|text>` need the `<` right before them.
        (GoogleChat, '<') => "<\u{200B}",
        // A Markdown link needs `](` together; Teams' clients do not all honour `\[`.
        (GoogleChat | Teams, ']') => "]\u{200B}",
        _ => return None,
    })
}

/// A whole message with its mention syntax made inert for `to`, whoever wrote it: what a sink
/// without `mentions: true` sends. Links and other markup are left alone. Idempotent, and
/// harmless on text [`escape`] already made safe.
pub fn defuse(to: Receiver, text: &str) -> String {
    match to {
        // `<!channel>`, `<!here>`, `<!everyone>`, `<!subteam^…>`, `<@U…>`.
        Receiver::Slack => text.replace("<!", "&lt;!").replace("<@", "&lt;@"),
        // `<!channel>` is turned into `@channel` by its Slack compatibility; every `@` may
        // start a mention.
        Receiver::Mattermost => after_each(&text.replace("<!", "&lt;!"), '@'),
        // Discord is also told in `allowed_mentions`; this keeps `@everyone` from even looking
        // like a mention.
        Receiver::Discord => after_each(text, '@'),
        Receiver::GoogleChat => text.replace("<users/", "<\u{200B}users/"),
        // Teams mentions only through entities the preset never sends; ntfy has none.
        Receiver::Teams | Receiver::Ntfy => text.to_string(),
    }
}

/// `text` with a zero-width space after every `mark` that has none yet.
fn after_each(text: &str, mark: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == mark && chars.peek() != Some(&ZWSP) {
            out.push(ZWSP);
        }
    }
    out
}

/// Discord's `allowed_mentions`: none unless the sink says `mentions: true`, then those its
/// text names (the source's own cannot be among them: [`escape`] broke them).
pub fn allowed_mentions(mentions: bool) -> serde_json::Value {
    if mentions {
        serde_json::json!({ "parse": ["users", "roles", "everyone"] })
    } else {
        serde_json::json!({ "parse": [] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<!channel> @everyone <@U123> <users/all> <https://evil.example|click> [click](https://evil.example) a\\[b & `c`";

    #[test]
    fn each_receiver_gets_its_own_escapes() {
        use Receiver::*;
        assert_eq!(
            escape(Slack, HOSTILE),
            "&lt;!channel&gt; @everyone &lt;@U123&gt; &lt;users/all&gt; &lt;https://evil.example|click&gt; [click](https://evil.example) a\\[b &amp; `c`"
        );
        assert_eq!(
            escape(Mattermost, HOSTILE),
            "&lt;!channel&gt; @\u{200B}everyone &lt;@\u{200B}U123&gt; &lt;users/all&gt; &lt;https://evil.example|click&gt; \\[click\\](https://evil.example) a\\\\\\[b &amp; \\`c\\`"
        );
        assert_eq!(
            escape(Discord, HOSTILE),
            "\\<!channel> @\u{200B}everyone \\<@\u{200B}U123> \\<users/all> \\<https://evil.example|click> \\[click\\](https://evil.example) a\\\\\\[b & \\`c\\`"
        );
        assert_eq!(
            escape(GoogleChat, HOSTILE),
            "<\u{200B}!channel> @everyone <\u{200B}@U123> <\u{200B}users/all> <\u{200B}https://evil.example|click> [click]\u{200B}(https://evil.example) a\\[b & `c`"
        );
        assert_eq!(
            escape(Teams, HOSTILE),
            "<!channel> @everyone <@U123> <users/all> <https://evil.example|click> [click]\u{200B}(https://evil.example) a\\[b & `c`"
        );
        assert_eq!(escape(Ntfy, HOSTILE), HOSTILE);
        assert_eq!(escape(Slack, "€ plain ✓"), "€ plain ✓");
    }

    #[test]
    fn defuse_takes_out_mentions_only_and_is_idempotent() {
        use Receiver::*;
        let own = "<!here> <@U1> @channel <users/all> <https://example.com|docs>";
        let slack = defuse(Slack, own);
        assert_eq!(
            slack,
            "&lt;!here> &lt;@U1> @channel <users/all> <https://example.com|docs>"
        );
        assert_eq!(
            defuse(Mattermost, own),
            "&lt;!here> <@\u{200B}U1> @\u{200B}channel <users/all> <https://example.com|docs>"
        );
        assert_eq!(
            defuse(GoogleChat, own),
            "<!here> <@U1> @channel <\u{200B}users/all> <https://example.com|docs>"
        );
        for to in Receiver::ALL {
            let once = defuse(to, own);
            assert_eq!(defuse(to, &once), once, "{to:?}");
            let escaped = escape(to, HOSTILE);
            assert_eq!(defuse(to, &escaped), escaped, "{to:?}");
        }
        assert_eq!(
            defuse(Discord, own),
            "<!here> <@\u{200B}U1> @\u{200B}channel <users/all> <https://example.com|docs>"
        );
        assert_eq!(defuse(Teams, own), own);
    }

    #[test]
    fn names_round_trip() {
        for r in Receiver::ALL {
            assert_eq!(Receiver::from_name(r.name()), Some(r));
        }
        assert_eq!(Receiver::from_name("slak"), None);
    }
}
