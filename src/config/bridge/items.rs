//! `items` checked (docs/configuration.md#items): which parts of the body are the items, their
//! key, and what of each counts as a change (include and exclude); a feed's selection has
//! defaults.

use super::Validator;
use super::model::Items;
use crate::config::raw::{self, RawFormat};
use crate::formats::{FEED_KEY, FEED_SELECT};

impl Validator<'_> {
    /// The selection; a feed's has defaults (`$.entries[*]` keyed by `$.id`).
    pub(super) fn items(&mut self, i: &raw::RawItems, format: Option<RawFormat>) -> Option<Items> {
        let feed = format == Some(RawFormat::Feed);
        let select = match i.select.as_deref() {
            Some(s) => self.jsonpath("items.select", s),
            None if feed => self.jsonpath("items.select", FEED_SELECT),
            None => {
                // At the format that has no default, if one is written.
                let at = match format {
                    Some(_) => "source.format",
                    None => "items.select",
                };
                self.err(
                    at,
                    format!("items.select: missing (only `source.format: feed` has a default, `{FEED_SELECT}`)"),
                );
                None
            }
        };
        let key = match i.key.as_deref() {
            Some(k) => Some(self.jsonpath("items.key", k)),
            None if feed => Some(self.jsonpath("items.key", FEED_KEY)),
            None => None,
        };
        let mut include = Vec::new();
        for (n, p) in i.include.iter().flatten().enumerate() {
            include.extend(self.jsonpath(&format!("items.include[{n}]"), p));
        }
        let mut exclude = Vec::new();
        for (n, p) in i.exclude.iter().flatten().enumerate() {
            exclude.extend(self.jsonpath(&format!("items.exclude[{n}]"), p));
        }
        Some(Items {
            select: select?,
            key: match key {
                Some(k) => Some(k?),
                None => None,
            },
            include: include.into(),
            exclude: exclude.into(),
        })
    }
}
